package bench

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway"
)

// stageLog collects the gateway's per-request stage durations
// (gateway.Config.OnStages) while it is on.
type stageLog struct {
	mu  sync.Mutex
	on  bool
	all []gateway.Stages
}

func (s *stageLog) record(st gateway.Stages) {
	s.mu.Lock()
	if s.on {
		s.all = append(s.all, st)
	}
	s.mu.Unlock()
}

func (s *stageLog) start() {
	s.mu.Lock()
	s.on, s.all = true, nil
	s.mu.Unlock()
}

func (s *stageLog) stop() []gateway.Stages {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	return s.all
}

// StageShares says where the network's requests spent their time: the
// mean of each stage over the slowest 1 % of requests by total, and over
// the middle 10 % (the 45th to the 55th percentile).
type StageShares struct {
	Requests        int
	Slowest, Middle gateway.Stages
}

func stageShares(all []gateway.Stages) StageShares {
	all = slices.Clone(all)
	slices.SortFunc(all, func(a, b gateway.Stages) int { return int(a.Total - b.Total) })
	n := len(all)
	return StageShares{Requests: n, Slowest: meanStages(all[n-max(n/100, min(n, 1)):]), Middle: meanStages(all[n*45/100 : max(n*55/100, min(n, n*45/100+1))])}
}

func meanStages(s []gateway.Stages) gateway.Stages {
	var m gateway.Stages
	if len(s) == 0 {
		return m
	}
	for _, x := range s {
		m.Wait += x.Wait
		m.Link += x.Link
		m.Agent += x.Agent
		m.Receipt += x.Receipt
		m.Write += x.Write
		m.Total += x.Total
	}
	n := time.Duration(len(s))
	return gateway.Stages{Wait: m.Wait / n, Link: m.Link / n, Agent: m.Agent / n, Receipt: m.Receipt / n, Write: m.Write / n, Total: m.Total / n}
}

// String is one line per group: each stage's mean and share of the total.
func (s StageShares) String() string {
	line := func(name string, st gateway.Stages) string {
		part := func(stage string, d time.Duration) string {
			return fmt.Sprintf("%s %s (%.0f%%)", stage, ms(d), 100*float64(d)/float64(max(st.Total, 1)))
		}
		return fmt.Sprintf("  idlegrid's %s: %s = %s", name, ms(st.Total), strings.Join([]string{part("slot wait", st.Wait), part("link", st.Link),
			part("agent", st.Agent), part("receipt", st.Receipt), part("write", st.Write)}, " + "))
	}
	return line("slowest 1% (mean)", s.Slowest) + "\n" + line("middle 10% (mean)", s.Middle)
}
