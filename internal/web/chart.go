package web

// chart is a bar chart laid out on the server and drawn by the chart
// template as inline SVG: coordinates are integers in the SVG's own units,
// labels are text that html/template escapes like any other.
type chart struct {
	Title      string
	Width      int
	Height     int
	Bars       []bar
	MaxLabel   string // the value at the top of the axis
	FirstLabel string // under the first bar
	LastLabel  string // under the last bar
	PlotTop    int
	PlotBottom int
	LabelY     int
	Empty      bool
}

type bar struct {
	X, Y, W, H int
	// Tip is the bar's tooltip: its label and value.
	Tip string
}

// Layout constants in SVG units.
const (
	chartWidth  = 600
	chartHeight = 160
	chartTop    = 16
	chartBottom = 130
	chartLeft   = 8
	chartRight  = 592
	maxSlot     = 48 // a few bars stay bars, not slabs
)

// point is one bar: its label and value.
type point struct {
	Label string
	Value uint64
}

// newChart lays out points as bars scaled to the largest value.
func newChart(title string, points []point, format func(uint64) string) chart {
	c := chart{Title: title, Width: chartWidth, Height: chartHeight, PlotTop: chartTop, PlotBottom: chartBottom, LabelY: chartHeight - 12}
	if len(points) == 0 {
		c.Empty = true
		return c
	}
	var top uint64
	for _, p := range points {
		top = max(top, p.Value)
	}
	c.Empty = top == 0
	c.MaxLabel = format(top)
	c.FirstLabel, c.LastLabel = points[0].Label, points[len(points)-1].Label
	slot := min((chartRight-chartLeft)/len(points), maxSlot)
	gap := max(slot/6, 1)
	if slot <= 2 {
		gap = 0
	}
	for i, p := range points {
		h := 0
		if top > 0 {
			h = int(float64(p.Value) / float64(top) * float64(chartBottom-chartTop))
		}
		if p.Value > 0 && h == 0 {
			h = 1 // a non-zero value stays visible
		}
		c.Bars = append(c.Bars, bar{
			X: chartLeft + i*slot + gap/2, W: max(slot-gap, 1),
			Y: chartBottom - h, H: h,
			Tip: p.Label + ": " + format(p.Value),
		})
	}
	return c
}
