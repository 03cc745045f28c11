package bench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/store/pgtemp"
)

// TestScaleSmoke runs a short `bench scale`: every request served is billed
// and settled, at every number of gateways.
func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a validator and gateways")
	}
	if _, err := pgtemp.FindBin(); errors.Is(err, pgtemp.ErrNoPostgres) {
		t.Skipf("skipping: %v", err)
	}
	var out strings.Builder
	res, err := Scale(t.Context(), ScaleConfig{Gateways: []int{1, 2}, Providers: 2, Slots: 8, Clients: 4,
		Duration: time.Second, MaxTokens: 4, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(res.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Requests == 0 || r.Settled != r.Requests || r.RPS() <= 0 || r.SettledPerSecond() <= 0 {
			t.Errorf("%d gateways: %+v", r.Gateways, r)
		}
	}
	if s := res.Summary(); !strings.Contains(s, "2 gateway(s)") || !strings.Contains(s, "×") {
		t.Errorf("summary %q", s)
	}
}
