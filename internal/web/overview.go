package web

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Sizes of the overview.
const (
	recentShown   = 20 // requests listed
	chartMinutes  = 30 // minutes in the throughput chart
	rateWindowMin = 1  // minutes averaged for tokens/s
)

type overviewData struct {
	Providers  []providerRow
	Models     []apitypes.Model
	Online     int
	Paused     int
	InFlight   int
	Slots      int
	TokensPerS string
	// Requests are recent settled receipts: a request id is public once
	// the ledger holds it. Unsettled ones are only counted (Unsettled),
	// since knowing an unsettled id is what its consumer alone needs.
	Requests    []requestRow
	Unsettled   int
	Throughput  chart
	Height      int64
	HasLedger   bool
	RateMinutes int
}

type providerRow struct {
	hub.Info
	Models string
}

// requestRow is one stored receipt as the tables show it.
type requestRow struct {
	store.StoredReceipt
	Status string
}

func newRequestRow(r store.StoredReceipt) requestRow {
	row := requestRow{StoredReceipt: r, Status: "pending settlement"}
	switch {
	case r.SettleHeight > 0:
		row.Status = "settled at " + strconv.FormatInt(r.SettleHeight, 10)
	case r.Rejected:
		row.Status = "rejected"
	}
	return row
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := u.ctx(r)
	defer cancel()
	p := &page{Title: "Network", Nav: "overview"}
	d := overviewData{HasLedger: u.cfg.Blocks != nil, RateMinutes: rateWindowMin}
	for _, info := range u.cfg.Hub.Snapshot() {
		names := make([]string, 0, len(info.Capabilities.Models))
		for _, m := range info.Capabilities.Models {
			names = append(names, m.Name)
		}
		d.Providers = append(d.Providers, providerRow{Info: info, Models: strings.Join(names, ", ")})
		d.Online++
		if info.Paused {
			d.Paused++
		}
		d.InFlight += info.InFlight
		d.Slots += info.Capabilities.Slots
	}
	var err error
	if d.Models, err = u.models(ctx); err != nil {
		p.note("Models are unavailable: %v", err)
	}
	recent, err := u.cfg.Receipts.RecentReceipts(ctx, recentShown)
	if err != nil {
		u.log.Error("web: recent receipts", "err", err)
		p.note("Recent requests are unavailable: the store could not be read.")
	}
	for _, s := range recent {
		if s.SettleHeight == 0 {
			d.Unsettled++
			continue
		}
		d.Requests = append(d.Requests, newRequestRow(s))
	}
	d.Throughput, d.TokensPerS = u.throughput(ctx, p)
	if u.cfg.Blocks != nil {
		if d.Height, _, err = u.cfg.Blocks.Latest(ctx); err != nil {
			p.note("The ledger is unreachable: %v", err)
		}
	}
	p.Data = d
	u.render(w, http.StatusOK, "overview.html", p)
}

// throughput charts completion tokens per minute over the last
// chartMinutes and averages the last rateWindowMin minutes as tokens/s.
func (u *UI) throughput(ctx context.Context, p *page) (chart, string) {
	now := u.cfg.Now().UTC()
	end := now.Truncate(time.Minute)
	start := end.Add(-(chartMinutes - 1) * time.Minute)
	mins, err := u.cfg.Receipts.TokensPerMinute(ctx, start)
	if err != nil {
		u.log.Error("web: tokens per minute", "err", err)
		p.note("Throughput is unavailable: the store could not be read.")
	}
	byMinute := map[int64]uint64{}
	for _, m := range mins {
		byMinute[m.Minute.Unix()] += uint64(max(m.Completion, 0))
	}
	points := make([]point, chartMinutes)
	for i := range points {
		t := start.Add(time.Duration(i) * time.Minute)
		points[i] = point{Label: t.Format("15:04"), Value: byMinute[t.Unix()]}
	}
	// Tokens/s over the last full minutes and the current partial one.
	var tokens uint64
	for i := chartMinutes - 1 - rateWindowMin; i < chartMinutes; i++ {
		tokens += points[i].Value
	}
	secs := float64(rateWindowMin)*60 + now.Sub(end).Seconds()
	rate := strconv.FormatFloat(float64(tokens)/secs, 'f', 1, 64)
	format := func(v uint64) string { return strconv.FormatUint(v, 10) + " tokens" }
	return newChart("Completion tokens per minute (UTC), last "+strconv.Itoa(chartMinutes)+" minutes", points, format), rate
}
