// Package metrics exposes what idlegrid's processes do in the Prometheus
// text format at /metrics: the gateway's requests, time to first token,
// per-token latency, tokens, queue, connected providers and receipts; the
// provider agent's jobs and tokens. Each process has its own registry (no
// global state), so several networks can run in one test process. The
// validators' metrics are CometBFT's own (see chain.NodeConfig).
package metrics

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gateway holds the gateway's metrics. A nil *Gateway records nothing.
type Gateway struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ttft     *prometheus.HistogramVec
	perToken *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	// routes are the path prefixes requests are labelled by.
	routes []string
}

// Latency buckets from 1 ms to about 2 min.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2.5, 14)

// NewGateway registers the gateway's metrics (and the Go runtime's) in a
// fresh registry. Requests are labelled by routes, the gateway's path
// prefixes (gateway.MetricsRoutes), and "other".
func NewGateway(routes ...string) *Gateway {
	m := &Gateway{reg: prometheus.NewRegistry(), routes: routes}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idlegrid_gateway_requests_total",
		Help: "HTTP requests answered, by API route and status code.",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "idlegrid_gateway_request_duration_seconds", Help: "Time to answer an HTTP request in full, by API route.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "idlegrid_gateway_time_to_first_token_seconds", Help: "From dispatch to a provider to its first token, by model.",
		Buckets: latencyBuckets,
	}, []string{"model"})
	m.perToken = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "idlegrid_gateway_token_latency_seconds", Help: "Mean time between generated tokens of a served request, by model.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"model"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idlegrid_gateway_tokens_total", Help: "Tokens in countersigned receipts, by model and kind (prompt, completion).",
	}, []string{"model", "kind"})
	m.reg.MustRegister(m.requests, m.duration, m.ttft, m.perToken, m.tokens,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics.
func (m *Gateway) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gauge registers a gauge whose value f reads at each scrape.
func (m *Gateway) Gauge(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Served records a request served in full: its time to first token, the
// mean time between its tokens and its countersigned token counts.
func (m *Gateway) Served(model string, firstToken, generation time.Duration, prompt, completion uint64) {
	if m == nil {
		return
	}
	if firstToken >= 0 {
		m.ttft.WithLabelValues(model).Observe(firstToken.Seconds())
	}
	if completion >= 2 && generation > 0 {
		m.perToken.WithLabelValues(model).Observe(generation.Seconds() / float64(completion-1))
	}
	m.tokens.WithLabelValues(model, "prompt").Add(float64(prompt))
	m.tokens.WithLabelValues(model, "completion").Add(float64(completion))
}

// Instrument counts and times the requests h answers. Routes are the API's
// fixed paths (ids in paths are cut off), so the label set stays small.
func (m *Gateway) Instrument(h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := Route(m.routes, r.URL.Path)
		m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// Route is the metrics label of a request path: the longest of routes it
// starts with, or "other".
func Route(routes []string, path string) string {
	best := ""
	for _, r := range routes {
		if (path == r || strings.HasPrefix(path, r+"/")) && len(r) > len(best) {
			best = r
		}
	}
	if best == "" {
		return "other"
	}
	return best
}

// statusWriter remembers the status code written; it passes Flush on so
// streaming answers keep streaming.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over, for the providers' WebSocket upgrade
// (a hijacked connection is counted as switching protocols).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("metrics: %T cannot hijack", w.ResponseWriter)
	}
	if !w.wrote {
		w.code, w.wrote = http.StatusSwitchingProtocols, true
	}
	return h.Hijack()
}

// Provider builds the provider agent's metrics from read functions of its
// status, for its control endpoint's /metrics.
type Provider struct {
	Served, Failed, Tokens, Active func() float64
	Paused, Connected              func() float64
}

// Handler serves the provider's metrics.
func (p Provider) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "idlegrid_provider_jobs_served_total", Help: "Jobs served to the end."}, p.Served),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "idlegrid_provider_jobs_failed_total", Help: "Jobs that failed."}, p.Failed),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "idlegrid_provider_tokens_total", Help: "Completion tokens generated."}, p.Tokens),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "idlegrid_provider_jobs_running", Help: "Jobs running now."}, p.Active),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "idlegrid_provider_paused", Help: "1 while the owner uses the machine (or paused by hand)."}, p.Paused),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "idlegrid_provider_connected", Help: "1 while connected to the gateway."}, p.Connected),
		collectors.NewGoCollector(),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
