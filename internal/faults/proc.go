package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// Kind is a kind of process the fault loop kills.
type Kind string

// The kinds of process in a run.
const (
	KindValidator Kind = "validator"
	KindGateway   Kind = "gateway"
	KindProvider  Kind = "provider"
	KindSim       Kind = "sim"
)

// Kinds lists every kind, in the order reports print them.
var Kinds = []Kind{KindValidator, KindGateway, KindProvider, KindSim}

// readyTimeout bounds how long a starting process may take to print the
// line that says it serves; a validator replaying its blocks after a kill
// is the slowest.
const readyTimeout = 90 * time.Second

// process is one idlegrid process of the run, started again with the same
// arguments after each kill. Its stdout and stderr are appended to a log
// file that survives restarts, for reading after a failed run.
type process struct {
	name  string
	kind  Kind
	bin   string
	args  []string
	log   string
	ready *regexp.Regexp // a stdout line that means it serves; its last submatch is kept

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current run's Wait returns
	starts  int
	readyAt string // last submatch of ready, from the latest start
}

// start runs the process and waits for its ready line.
func (p *process) start(ctx context.Context) error {
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	fmt.Fprintf(logf, "=== start %s %v\n", p.name, p.args)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	exited := make(chan struct{})
	readyc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := p.ready.FindStringSubmatch(line); m != nil && !found {
				found = true
				readyc <- m[len(m)-1]
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.starts++
	p.mu.Unlock()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case v := <-readyc:
		p.mu.Lock()
		p.readyAt = v
		p.mu.Unlock()
		return nil
	case <-exited:
		return fmt.Errorf("%s exited before it was ready (log: %s)", p.name, p.log)
	case <-timer.C:
		p.kill()
		return fmt.Errorf("%s not ready within %v (log: %s)", p.name, readyTimeout, p.log)
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	}
}

// kill sends SIGKILL and waits for the process to be gone: no signal
// handler runs, no file is closed cleanly, no goodbye is sent.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// stop asks the process to exit (SIGTERM) and kills it if it has not
// within a few seconds; used once the run is over.
func (p *process) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		cmd.Process.Kill()
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// running reports whether the current run has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// readyValue is what the ready line of the latest start captured.
func (p *process) readyValue() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyAt
}
