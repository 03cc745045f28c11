package node

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/idle"
	"github.com/idlegrid/idlegrid/internal/provider"
)

// TestDecodeControlAnswer: a status is read back exactly; an error answer
// or a body that is not a status is an error that says so.
func TestDecodeControlAnswer(t *testing.T) {
	want := sampleStatus()
	raw, _ := json.Marshal(want)
	got, err := decodeControlAnswer(http.StatusOK, "200 OK", raw)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read %+v back as %+v (%v)", want, got, err)
	}
	tests := []struct {
		name   string
		code   int
		status string
		body   string
		want   string
	}{
		{"error answer", 400, "400 Bad Request", `{"error":"body: unexpected EOF"}`, "400 Bad Request: body: unexpected EOF"},
		{"error without a body", 500, "500 Internal Server Error", ``, "500 Internal Server Error"},
		{"error that is not JSON", 502, "502 Bad Gateway", `<html>`, "502 Bad Gateway"},
		{"not JSON", 200, "200 OK", `<html>`, "not a status"},
		{"truncated", 200, "200 OK", string(raw[:len(raw)/2]), "not a status"},
		{"wrong type", 200, "200 OK", `{"agent":{"Served":"many"}}`, "not a status"},
		{"empty", 200, "200 OK", ``, "not a status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := decodeControlAnswer(tt.code, tt.status, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !reflect.DeepEqual(st, ControlStatus{}) {
				t.Fatalf("got %+v, error %v; want an error containing %q", st, err, tt.want)
			}
		})
	}
}

func sampleStatus() ControlStatus {
	checked := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	return ControlStatus{Provider: strings.Repeat("ab", 32), Address: "idg" + strings.Repeat("0", 40), Gateway: "http://127.0.0.1:8420", Backend: "ollama",
		Agent: provider.Status{Connected: true, Paused: true, Reason: "gpu busy", Served: 7, Failed: 1, Tokens: 900, Active: 2},
		Idle:  &idle.Status{Paused: true, Reason: "gpu busy", Checked: checked, Results: []idle.Result{{Check: "gpu", Busy: true, Reason: "97% busy"}}, ClearSince: checked}}
}

// FuzzDecodeControlAnswer: whatever a process at the control address
// answers, `provide status` gets a status or an error, never a panic; an
// error answer is always an error naming its status line; an accepted
// status survives being sent again unchanged.
func FuzzDecodeControlAnswer(f *testing.F) {
	raw, _ := json.Marshal(sampleStatus())
	f.Add(200, raw)
	f.Add(200, []byte(`{"provider":"x","agent":{"Connected":false},"idle":null}`))
	f.Add(200, []byte(`{"idle":{"checked":"2025-06-01T12:00:00+01:00","checks":[{}],"clear_since":"0001-01-01T00:00:00Z"}}`))
	f.Add(400, []byte(`{"error":"body: EOF"}`))
	f.Add(500, []byte(`null`))
	f.Fuzz(func(t *testing.T, code int, raw []byte) {
		status := http.StatusText(code)
		st, err := decodeControlAnswer(code, status, raw)
		if code != http.StatusOK {
			if err == nil || !strings.Contains(err.Error(), status) {
				t.Fatalf("answer %d %q: status %+v, error %v", code, raw, st, err)
			}
			return
		}
		if err != nil {
			if !reflect.DeepEqual(st, ControlStatus{}) {
				t.Fatalf("a rejected answer returned %+v", st)
			}
			return
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("accepted status %+v cannot be sent again: %v", st, err)
		}
		// Compared as sent, not with DeepEqual: a time read with a numeric
		// zone offset is written back in UTC, the same instant in another
		// *time.Location.
		back, err := decodeControlAnswer(http.StatusOK, "200 OK", again)
		if err != nil {
			t.Fatalf("sent again, %s was refused: %v", again, err)
		}
		if twice, _ := json.Marshal(back); !bytes.Equal(twice, again) {
			t.Fatalf("sent again, %s came back as %s", again, twice)
		}
	})
}

// FuzzReadPauseReason: any POST /v1/pause body gives a reason or an error,
// never a panic; the reason comes from the first maxPauseBody bytes only,
// and a reason read is read the same when sent again.
func FuzzReadPauseReason(f *testing.F) {
	f.Add([]byte(`{"reason":"gaming"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"reason":"\ud800x"}`))
	f.Add([]byte(`{"reason":"` + strings.Repeat("a", maxPauseBody) + `"}`))
	f.Add([]byte(`{"reason":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		reason, err := readPauseReason(bytes.NewReader(body))
		if err != nil {
			if reason != "" {
				t.Fatalf("error %v with reason %q", err, reason)
			}
			return
		}
		// Each byte of invalid UTF-8 becomes U+FFFD, three bytes.
		if len(reason) > 3*maxPauseBody {
			t.Fatalf("a reason of %d bytes from a body bounded to %d", len(reason), maxPauseBody)
		}
		again, _ := json.Marshal(map[string]string{"reason": reason})
		if back, err := readPauseReason(bytes.NewReader(again)); len(again) <= maxPauseBody && (err != nil || back != reason) {
			t.Fatalf("reason %q sent again came back as %q (%v)", reason, back, err)
		}
	})
}
