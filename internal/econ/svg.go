package econ

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Plot geometry, in SVG user units.
const (
	plotWidth   = 900
	panelHeight = 220
	marginLeft  = 110
	marginRight = 30
	marginTop   = 40
	panelGap    = 70
)

// panel is one chart: epochs along x, one value scale along y.
type panel struct {
	top    float64
	epochs int
	ymax   float64
	b      *strings.Builder
}

func (p *panel) x(epoch int) float64 {
	return marginLeft + float64(epoch-1)*(plotWidth-marginLeft-marginRight)/float64(max(p.epochs-1, 1))
}

func (p *panel) y(v float64) float64 {
	if p.ymax <= 0 {
		return p.top + panelHeight
	}
	return p.top + panelHeight - min(v/p.ymax, 1.05)*panelHeight
}

// frame draws the axes, the title, and ticks for y in the unit given.
func (p *panel) frame(title, unit string) {
	fmt.Fprintf(p.b, `<text x="%d" y="%.1f" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, p.top-14, html.EscapeString(title))
	fmt.Fprintf(p.b, `<rect x="%d" y="%.1f" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", marginLeft, p.top, plotWidth-marginLeft-marginRight, panelHeight)
	for i := 0; i <= 4; i++ {
		v := p.ymax * float64(i) / 4
		fmt.Fprintf(p.b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", marginLeft, plotWidth-marginRight, p.y(v), p.y(v))
		fmt.Fprintf(p.b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", marginLeft-6, p.y(v)+4, html.EscapeString(axisLabel(v, unit)))
	}
	for _, e := range samples(p.epochs, 7) {
		fmt.Fprintf(p.b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%d</text>`+"\n", p.x(e+1), p.top+panelHeight+15, e+1)
	}
	fmt.Fprintf(p.b, `<text x="%d" y="%.1f" font-size="11" text-anchor="middle">epoch</text>`+"\n", (plotWidth+marginLeft)/2, p.top+panelHeight+30)
}

// line draws ys (one per epoch) as a polyline.
func (p *panel) line(ys []float64, color, dash string) {
	var pts []string
	for i, v := range ys {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x(i+1), p.y(v)))
	}
	fmt.Fprintf(p.b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-dasharray="%s" points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
}

// area fills between lower and upper (one per epoch).
func (p *panel) area(lower, upper []float64, color string) {
	var pts []string
	for i, v := range upper {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x(i+1), p.y(v)))
	}
	for i := len(lower) - 1; i >= 0; i-- {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", p.x(i+1), p.y(lower[i])))
	}
	fmt.Fprintf(p.b, `<polygon fill="%s" fill-opacity="0.7" stroke="none" points="%s"/>`+"\n", color, strings.Join(pts, " "))
}

func (p *panel) legend(i int, color, text string) {
	x := marginLeft + 10 + i*250
	fmt.Fprintf(p.b, `<rect x="%d" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, p.top+8, color)
	fmt.Fprintf(p.b, `<text x="%d" y="%.1f" font-size="12">%s</text>`+"\n", x+18, p.top+18, html.EscapeString(text))
}

// axisLabel formats a tick value compactly.
func axisLabel(v float64, unit string) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG%s", v/1e9, unit)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM%s", v/1e6, unit)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk%s", v/1e3, unit)
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

// tokens is a as a float number of tokens, for drawing only.
func tokens(a uint64) float64 { return float64(a) / 1e6 }

// WriteSVG draws the supply curve (cumulative minted against the cap, and
// minted per epoch) and the split of provider income between fees and
// emission. Figures are converted to floats for drawing only.
func (r *Report) WriteSVG(w io.Writer) error {
	n := len(r.Epochs)
	if n == 0 {
		return fmt.Errorf("econ: no epochs to plot")
	}
	var b strings.Builder
	height := marginTop + 3*(panelHeight+panelGap)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", plotWidth, height, plotWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	cum, minted, fees, income := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	zero := make([]float64, n)
	var topCum, topMinted, topIncome float64
	for i, e := range r.Epochs {
		cum[i], minted[i] = tokens(uint64(e.Cumulative)), tokens(uint64(e.Minted))
		fees[i], income[i] = tokens(uint64(e.Fees)), tokens(uint64(e.Fees)+uint64(e.Emission))
		topCum, topMinted, topIncome = max(topCum, cum[i]), max(topMinted, minted[i]), max(topIncome, income[i])
	}
	capTokens := tokens(uint64(r.Config.Params.SupplyCap))
	supply := &panel{top: marginTop, epochs: n, b: &b, ymax: topCum * 1.1}
	title := "Supply minted (ledger, genesis included)"
	if capTokens <= 3*topCum {
		supply.ymax = capTokens * 1.05
	} else {
		title += fmt.Sprintf("; the cap, %s tokens, is off the chart", axisLabel(capTokens, ""))
	}
	supply.frame(title, "")
	if capTokens <= supply.ymax {
		supply.line(slicesOf(n, capTokens), "#c0392b", "6 4")
		supply.legend(1, "#c0392b", "supply cap")
	}
	supply.line(cum, "#2c3e50", "")
	supply.legend(0, "#2c3e50", "cumulative minted")

	perEpoch := &panel{top: supply.top + panelHeight + panelGap, epochs: n, b: &b, ymax: topMinted * 1.1}
	perEpoch.frame("Minted per epoch (tokens)", "")
	perEpoch.line(minted, "#8e44ad", "")

	split := &panel{top: perEpoch.top + panelHeight + panelGap, epochs: n, b: &b, ymax: topIncome * 1.1}
	split.frame("Provider income per epoch (tokens): fees vs emission", "")
	split.area(zero, fees, "#27ae60")
	split.area(fees, income, "#f39c12")
	split.legend(0, "#27ae60", "fees (provider share)")
	split.legend(1, "#f39c12", "emission")
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func slicesOf(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
