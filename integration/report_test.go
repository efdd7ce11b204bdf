package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/baseline"
	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// BenchmarkReport measures subinterp against its baselines in one run and
// prints one table: the median over rounds of each variant's p50 and p99,
// and ratios to the baselines. Variants are interleaved round by round, so
// a noisy machine slows them alike and the ratios hold. Run it once:
//
//	go test -run '^$' -bench '^BenchmarkReport$' -benchtime 1x ./integration/
//
// With SUBINTERP_BENCH_PLOTS set to a directory, it also draws the latency
// distributions of Call and of the queue hand-off, beside their baselines,
// as PNG files there (make bench: docs/bench).
func BenchmarkReport(b *testing.B) {
	rounds := envInt("SUBINTERP_BENCH_ROUNDS", 5)
	calls := envInt("SUBINTERP_BENCH_CALLS", 2000)
	launches := envInt("SUBINTERP_BENCH_LAUNCHES", 10)

	raw, err := baseline.StartRaw()
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	plug, err := baseline.StartPlugin()
	if err != nil {
		b.Fatal(err)
	}
	defer plug.Close()
	lua := baseline.NewInProcessLua()
	defer lua.Close()
	rt := interpreters.New(interpreters.WithWarmSpares(1))
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		b.Fatal(err)
	}
	if err := interp.Exec(`function echo(x) return x end`); err != nil {
		b.Fatal(err)
	}
	rawConn, err := raw.Conn()
	if err != nil {
		b.Fatal(err)
	}
	defer rawConn.Close()
	cold := interpreters.New()
	defer cold.Close()
	handoff, stopRelay := startRelay(b, rt)
	defer stopRelay()
	hostCalls := hostRoundTrips(b, rt, false)
	hostCallsTimed := hostRoundTrips(b, rt, true)

	var created []*interpreters.Interpreter // closed outside the timed spans
	type variant struct {
		name string
		op   func(i int) error
		n    int
		// batch, when set, measures n operations itself (ones that cannot
		// be timed from outside one at a time) in place of op.
		batch func(n int) ([]time.Duration, error)
	}
	variants := []variant{
		{"floor: raw unix msgpack round trip", func(i int) error { _, err := rawConn.Echo(int64(i)); return err }, calls, nil},
		{"go-plugin net/rpc round trip", func(i int) error { _, err := plug.Echo(int64(i)); return err }, calls, nil},
		{"in-process gopher-lua call", func(i int) error { _, err := lua.Call(int64(i)); return err }, calls, nil},
		{"subinterp Call round trip", func(i int) error { _, err := interp.Call("echo", i); return err }, calls, nil},
		{name: "subinterp host function round trip", n: calls, batch: hostCalls},
		{name: "subinterp host function, call with deadline", n: calls, batch: hostCallsTimed},
		{"subinterp queue hand-off via a Lua relay", handoff, calls, nil},
		{"go-plugin launch + first call + kill", func(int) error { return baseline.LaunchPlugin() }, launches, nil},
		{"subinterp Create, cold", func(int) error {
			it, err := cold.Create()
			created = append(created, it)
			return err
		}, launches, nil},
		{"subinterp Create, warm spare", func(int) error {
			it, err := rt.Create()
			created = append(created, it)
			return err
		}, launches, nil},
	}
	p50 := make(map[string][]time.Duration)
	p99 := make(map[string][]time.Duration)
	all := make(map[string][]time.Duration) // every latency, for the plots
	for r := 0; r < rounds; r++ {
		for _, v := range variants {
			lat := make([]time.Duration, 0, v.n)
			if v.batch != nil {
				var err error
				if lat, err = v.batch(v.n); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
			}
			for i := 0; v.batch == nil && i < v.n; i++ {
				if strings.Contains(v.name, "warm spare") {
					waitSpare(rt) // measure the claim, not the refill
				}
				start := time.Now()
				if err := v.op(i); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
				lat = append(lat, time.Since(start))
			}
			for _, it := range created {
				_ = it.Close()
			}
			created = created[:0]
			all[v.name] = append(all[v.name], lat...)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p50[v.name] = append(p50[v.name], lat[len(lat)/2])
			p99[v.name] = append(p99[v.name], lat[len(lat)*99/100])
		}
	}
	floorTput, spreadTput, oursTput := throughput(b, raw, rt, rounds)

	var out strings.Builder
	fmt.Fprintf(&out, "\nsubinterp benchmark report: %d rounds, median of per-round p50/p99\n\n", rounds)
	fmt.Fprintf(&out, "| %-40s | %10s | %10s |\n|---|---:|---:|\n", "variant", "p50", "p99")
	for _, v := range variants {
		fmt.Fprintf(&out, "| %-40s | %10s | %10s |\n", v.name, median(p50[v.name]).Round(100*time.Nanosecond), median(p99[v.name]).Round(100*time.Nanosecond))
	}
	ratio := func(a, bb string) float64 {
		return float64(median(p50[a])) / float64(median(p50[bb]))
	}
	fmt.Fprintf(&out, "\n| ratio (p50) | value | target |\n|---|---:|---:|\n")
	fmt.Fprintf(&out, "| Call ÷ floor | %.2f | ≤ 1.30 |\n", ratio("subinterp Call round trip", "floor: raw unix msgpack round trip"))
	fmt.Fprintf(&out, "| Call ÷ go-plugin net/rpc | %.2f | ≤ 0.75 |\n", ratio("subinterp Call round trip", "go-plugin net/rpc round trip"))
	fmt.Fprintf(&out, "| host function ÷ floor | %.2f | ≤ 1.30 |\n", ratio("subinterp host function round trip", "floor: raw unix msgpack round trip"))
	fmt.Fprintf(&out, "| host function in a call with a deadline ÷ floor | %.2f | ≤ 1.30 |\n", ratio("subinterp host function, call with deadline", "floor: raw unix msgpack round trip"))
	fmt.Fprintf(&out, "| queue hand-off ÷ floor | %.2f | ≤ 1.50 |\n", ratio("subinterp queue hand-off via a Lua relay", "floor: raw unix msgpack round trip"))
	fmt.Fprintf(&out, "| cold Create ÷ go-plugin launch | %.2f | ≤ 1.00 |\n", ratio("subinterp Create, cold", "go-plugin launch + first call + kill"))
	fmt.Fprintf(&out, "| warm Create p50 | %s | ≤ 0.5ms |\n", median(p50["subinterp Create, warm spare"]).Round(10*time.Microsecond))
	fmt.Fprintf(&out, "| 8 busy: calls/s ours ÷ floor | %.0f ÷ %.0f = %.2f | ≥ 0.80 |\n", oursTput, floorTput, oursTput/floorTput)
	fmt.Fprintf(&out, "| 8 busy: calls/s ours ÷ floor with a server process per caller | %.0f ÷ %.0f = %.2f | (explains the row above) |\n", oursTput, spreadTput, oursTput/spreadTput)
	if mem, n := privateMemory(b, rt, 10); n > 0 {
		fmt.Fprintf(&out, "| private memory per idle interpreter | %.2f MiB (n=%d) | ≤ 3 MiB |\n", mem/(1<<20), n)
	}
	if dir := os.Getenv("SUBINTERP_BENCH_PLOTS"); dir != "" {
		files, err := writeReportPlots(dir, all, rounds)
		if err != nil {
			b.Fatalf("plots: %v", err)
		}
		fmt.Fprintf(&out, "\nplots: %s\n", strings.Join(files, ", "))
	}
	fmt.Print(out.String())
}

// throughput is calls/s with 8 concurrent callers: the floor with one raw
// connection each to one server process, the floor spread over a server
// process per caller (as subinterp has a worker per interpreter), and
// subinterp with one interpreter each.
func throughput(b *testing.B, raw *baseline.Raw, rt *interpreters.Runtime, rounds int) (floor, spread, ours float64) {
	const callers = 8
	const per = 500
	interps := make([]*interpreters.Interpreter, callers)
	for i := range interps {
		it, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Close()
		interps[i] = it
	}
	conns := make([]*baseline.RawConn, callers)
	for i := range conns {
		c, err := raw.Conn()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	spreadConns := rawServers(b, callers)
	run := func(op func(k, i int) error) float64 {
		var wg sync.WaitGroup
		start := time.Now()
		for k := 0; k < callers; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if err := op(k, i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(callers*per) / time.Since(start).Seconds()
	}
	var fs, ss, os []float64
	for r := 0; r < rounds; r++ {
		fs = append(fs, run(func(k, i int) error { _, err := conns[k].Echo(int64(i)); return err }))
		ss = append(ss, run(func(k, i int) error { _, err := spreadConns[k].Echo(int64(i)); return err }))
		os = append(os, run(func(k, i int) error { _, err := interps[k].Call("tostring", i); return err }))
	}
	sort.Float64s(fs)
	sort.Float64s(ss)
	sort.Float64s(os)
	return fs[len(fs)/2], ss[len(ss)/2], os[len(os)/2]
}

// privateMemory is the mean private memory (Private_Clean + Private_Dirty
// of smaps_rollup) of n idle interpreters' workers.
func privateMemory(b *testing.B, rt *interpreters.Runtime, n int) (float64, int) {
	var total float64
	count := 0
	for i := 0; i < n; i++ {
		it, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Close()
		pid, _ := it.Pid()
		priv, err := proctest.PrivateBytes(pid)
		if err != nil {
			continue
		}
		total += float64(priv)
		count++
	}
	if count == 0 {
		return 0, 0
	}
	return total / float64(count), count
}

// waitSpare waits, briefly, for the runtime's spare to be ready again.
func waitSpare(rt *interpreters.Runtime) {
	deadline := time.Now().Add(2 * time.Second)
	for rt.WarmSpares() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// hostRoundTrips returns the report's measure of a Lua call of an empty
// host function: one Call runs n+1 of them in a loop, the host function
// notes when each arrives, and the gap between arrivals is one round trip
// as the host sees it (its answer to the worker, the loop's next step,
// the worker's next request), the script's side of the floor's echo. With
// deadline the Call has one, and each host function runs on a goroutine of
// its own, which a call that can end must not wait on beyond its end.
func hostRoundTrips(b *testing.B, rt *interpreters.Runtime, deadline bool) func(n int) ([]time.Duration, error) {
	var arrivals []time.Time
	it, err := rt.Create(interpreters.WithFunc("empty", func(context.Context, ...any) (any, error) {
		arrivals = append(arrivals, time.Now()) // calls from one interpreter never overlap
		return nil, nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	return func(n int) ([]time.Duration, error) {
		arrivals = make([]time.Time, 0, n+1)
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if deadline {
			ctx, cancel = context.WithTimeout(ctx, time.Hour)
		}
		defer cancel()
		if _, err := it.CallContext(ctx, hostLoop, n+1); err != nil {
			return nil, err
		}
		lat := make([]time.Duration, n)
		for i := range lat {
			lat[i] = arrivals[i+1].Sub(arrivals[i])
		}
		return lat, nil
	}
}
