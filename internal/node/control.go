package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/idlegrid/idlegrid/internal/idle"
	"github.com/idlegrid/idlegrid/internal/metrics"
	"github.com/idlegrid/idlegrid/internal/provider"
)

// DefaultControlAddr is where `idlegrid provide` answers `provide status`,
// `pause` and `resume`: loopback only.
const DefaultControlAddr = "127.0.0.1:8421"

// ControlStatus is what the control endpoint reports.
type ControlStatus struct {
	Provider string          `json:"provider"`
	Address  string          `json:"address"`
	Gateway  string          `json:"gateway"`
	Backend  string          `json:"backend"`
	Agent    provider.Status `json:"agent"`
	Idle     *idle.Status    `json:"idle,omitempty"`
}

// controlHandler serves GET /v1/status, POST /v1/pause ({"reason"}) and
// POST /v1/resume for the owner of the machine.
func (p *Provider) controlHandler() http.Handler {
	mux := http.NewServeMux()
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	mux.Handle("GET /metrics", metrics.Provider{
		Served:    func() float64 { return float64(p.Agent.Status().Served) },
		Failed:    func() float64 { return float64(p.Agent.Status().Failed) },
		Tokens:    func() float64 { return float64(p.Agent.Status().Tokens) },
		Active:    func() float64 { return float64(p.Agent.Status().Active) },
		Paused:    func() float64 { return flag(p.Agent.Status().Paused) },
		Connected: func() float64 { return flag(p.Agent.Status().Connected) },
	}.Handler())
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, p.ControlStatus())
	})
	mux.HandleFunc("POST /v1/pause", func(w http.ResponseWriter, r *http.Request) {
		reason, err := readPauseReason(r.Body)
		if err != nil {
			writeControl(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
			return
		}
		if err := p.policy.Pause(reason); err != nil {
			writeControl(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		p.policy.Evaluate(r.Context(), time.Now())
		writeControl(w, http.StatusOK, p.ControlStatus())
	})
	mux.HandleFunc("POST /v1/resume", func(w http.ResponseWriter, r *http.Request) {
		if err := p.policy.Resume(); err != nil {
			writeControl(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		p.policy.Evaluate(r.Context(), time.Now())
		writeControl(w, http.StatusOK, p.ControlStatus())
	})
	return mux
}

// maxPauseBody bounds POST /v1/pause's body.
const maxPauseBody = 4096

// readPauseReason reads POST /v1/pause's body, {"reason": "…"}; an empty
// body pauses without a reason. Only the first maxPauseBody bytes are read.
func readPauseReason(body io.Reader) (string, error) {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxPauseBody)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return req.Reason, nil
}

func writeControl(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// ControlStatus reports the agent and its idle policy.
func (p *Provider) ControlStatus() ControlStatus {
	st := ControlStatus{Provider: p.Key.String(), Address: string(p.Key.Address()), Gateway: p.gateway, Backend: p.backend, Agent: p.Agent.Status()}
	if p.policy != nil {
		s := p.policy.Status()
		st.Idle = &s
	}
	return st
}

// serveControl listens on addr for the control endpoint until ctx ends.
func (p *Provider) serveControl(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("control endpoint %s: %w (pick another with --control-addr)", addr, err)
	}
	srv := &http.Server{Handler: p.controlHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("control endpoint stopped", "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// ControlClient talks to a running provider's control endpoint.
type ControlClient struct {
	URL  string
	HTTP *http.Client
}

// Status fetches the provider's status.
func (c ControlClient) Status(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodGet, "/v1/status", nil)
}

// Pause pauses serving with reason until Resume.
func (c ControlClient) Pause(ctx context.Context, reason string) (ControlStatus, error) {
	b, _ := json.Marshal(map[string]string{"reason": reason})
	return c.call(ctx, http.MethodPost, "/v1/pause", b)
}

// Resume ends a manual pause.
func (c ControlClient) Resume(ctx context.Context) (ControlStatus, error) {
	return c.call(ctx, http.MethodPost, "/v1/resume", nil)
}

func (c ControlClient) call(ctx context.Context, method, path string, body []byte) (ControlStatus, error) {
	var st ControlStatus
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, bytesReader(body))
	if err != nil {
		return st, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("provider control endpoint at %s: %w (is `idlegrid provide` running? --control picks its address)", c.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, err
	}
	return decodeControlAnswer(resp.StatusCode, resp.Status, raw)
}

// decodeControlAnswer reads the control endpoint's answer: the status when
// code is 200, else an error carrying the status line and the endpoint's
// {"error"} message if it sent one.
func decodeControlAnswer(code int, status string, raw []byte) (ControlStatus, error) {
	var st ControlStatus
	if code != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(raw, &e) // best effort: the status line alone still says what failed
		return st, fmt.Errorf("provider control endpoint: %s: %s", status, e.Error)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return ControlStatus{}, fmt.Errorf("provider control endpoint: not a status: %w", err)
	}
	return st, nil
}

func bytesReader(b []byte) io.Reader {
	if b == nil {
		return http.NoBody
	}
	return bytes.NewReader(b)
}
