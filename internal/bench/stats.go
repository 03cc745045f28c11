// Package bench is idlegrid's performance harness: it starts real
// components on loopback and measures them against a baseline in the same
// run, so the figures are ratios and differences rather than absolute
// numbers from a machine nobody else has.
package bench

import (
	"fmt"
	"slices"
	"time"
)

// Dist is a sorted sample of durations.
type Dist []time.Duration

// NewDist sorts d.
func NewDist(d []time.Duration) Dist {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

// Q is the q-quantile (0..1) by nearest rank.
func (d Dist) Q(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// Max is the largest sample.
func (d Dist) Max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
