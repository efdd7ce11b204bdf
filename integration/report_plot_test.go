package integration

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// latencyPlot is one figure of the report: the latency distributions of
// some variants, each as the share of calls done within a given time.
type latencyPlot struct {
	file     string
	title    string
	variants []string
}

// reportPlots are the figures BenchmarkReport draws: subinterp's Call and
// queue hand-off, each beside the baselines it is measured against. The
// in-process gopher-lua call is left out: a thousand times faster, it
// would squeeze the others into a corner of the axis.
var reportPlots = []latencyPlot{
	{"call-latency.png", "Call round trip", []string{
		"floor: raw unix msgpack round trip",
		"go-plugin net/rpc round trip",
		"subinterp Call round trip",
	}},
	{"handoff-latency.png", "Queue hand-off (put, a Lua relay gets and puts back, get)", []string{
		"floor: raw unix msgpack round trip",
		"go-plugin net/rpc round trip",
		"subinterp Call round trip",
		"subinterp queue hand-off via a Lua relay",
	}},
}

// plotColors tell the lines apart in print and for readers who do not
// see every colour: each also has a dash pattern of its own.
var plotColors = []color.Color{
	color.RGBA{0x88, 0x88, 0x88, 0xff}, // floor: grey
	color.RGBA{0xe0, 0x7b, 0x00, 0xff}, // go-plugin: orange
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, // in-process: green
	color.RGBA{0x1f, 0x5f, 0xd6, 0xff}, // subinterp: blue
	color.RGBA{0xb0, 0x1e, 0x8a, 0xff}, // subinterp hand-off: purple
}

// plotLineStyle is the colour and dashes of a variant: the same in every
// figure.
func plotLineStyle(name string) (color.Color, []vg.Length) {
	i := slices.Index([]string{
		"floor: raw unix msgpack round trip",
		"go-plugin net/rpc round trip",
		"in-process gopher-lua call",
		"subinterp Call round trip",
		"subinterp queue hand-off via a Lua relay",
	}, name)
	dashes := [][]vg.Length{{vg.Points(2), vg.Points(3)}, {vg.Points(8), vg.Points(4)}, {vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}, nil, nil}
	if i < 0 {
		return color.Black, nil
	}
	return plotColors[i], dashes[i]
}

// writeReportPlots draws reportPlots into dir from every latency measured,
// by variant, over rounds, and returns the files it wrote.
func writeReportPlots(dir string, lat map[string][]time.Duration, rounds int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"}
	var files []string
	for _, lp := range reportPlots {
		p := plot.New()
		p.Title.TextStyle.Font.Size = vg.Points(13)
		p.Title.Padding = vg.Points(8)
		n := len(lat[lp.variants[0]])
		p.Title.Text = fmt.Sprintf("%s: latency distribution (%d calls each, %d interleaved rounds)", lp.title, n, rounds)
		p.X.Label.Text = "latency (µs, log scale)"
		p.Y.Label.Text = "calls done within (%)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
		p.Y.Min, p.Y.Max = 0, 100
		p.Y.Tick.Marker = plot.ConstantTicks(percentTicks())
		// Bottom right, where every line has risen already.
		p.Legend.Top, p.Legend.Left = false, false
		p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(12)
		p.Legend.TextStyle.Font.Size = vg.Points(11)
		p.Legend.ThumbnailWidth = vg.Points(28)
		grid := plotter.NewGrid()
		grid.Vertical.Color = color.Gray{0xe0}
		grid.Horizontal.Color = color.Gray{0xe0}
		p.Add(grid)
		lo, hi := math.Inf(1), 0.0
		for _, name := range lp.variants {
			d := slices.Clone(lat[name])
			if len(d) == 0 {
				return nil, fmt.Errorf("plot %s: no latencies of %q", lp.file, name)
			}
			slices.Sort(d)
			line, err := plotter.NewLine(cumulative(d))
			if err != nil {
				return nil, err
			}
			line.Color, line.Dashes = plotLineStyle(name)
			line.Width = vg.Points(2)
			p.Add(line)
			p50, p99 := d[len(d)/2], d[len(d)*99/100]
			p.Legend.Add(fmt.Sprintf("%s   p50 %s · p99 %s", name, fmtMicros(p50), fmtMicros(p99)), line)
			lo, hi = min(lo, micros(d[0])), max(hi, micros(d[len(d)*999/1000]))
		}
		// The slowest 0.1% would stretch the axis over outliers only.
		p.X.Min, p.X.Max = lo*0.9, hi*1.1
		file := filepath.Join(dir, lp.file)
		if err := p.Save(10*vg.Inch, 5.5*vg.Inch, file); err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	return files, nil
}

// cumulative is the empirical distribution of sorted latencies, in µs
// against percent, at no more than a few hundred points.
func cumulative(sorted []time.Duration) plotter.XYs {
	const points = 400
	step := max(1, len(sorted)/points)
	var xys plotter.XYs
	for i := 0; i < len(sorted); i += step {
		xys = append(xys, plotter.XY{X: micros(sorted[i]), Y: 100 * float64(i+1) / float64(len(sorted))})
	}
	last := len(sorted) - 1
	return append(xys, plotter.XY{X: micros(sorted[last]), Y: 100})
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtMicros(d time.Duration) string {
	us := micros(d)
	if us >= 1000 {
		return fmt.Sprintf("%.2fms", us/1000)
	}
	return fmt.Sprintf("%.1fµs", us)
}

func percentTicks() []plot.Tick {
	var ticks []plot.Tick
	for v := 0; v <= 100; v += 10 {
		t := plot.Tick{Value: float64(v)}
		if v%20 == 0 {
			t.Label = fmt.Sprint(v)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// logTicks labels 1, 2 and 5 times each power of ten, which a reader of
// latencies reads more easily than powers of ten alone.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow10(int(e))
		for m := 1; m < 10; m++ {
			v := float64(m) * base
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = fmt.Sprint(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
