package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/baseline"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/interpreters"
)

// BenchmarkRemoteReport measures the same operations on a local runtime
// and on runtimes dialled to a daemon (over its Unix socket, and over TCP
// with TLS) in one run, interleaved round by round, and prints each
// remote p50 as a multiple of the local one, beside the floor: a raw
// round trip over one hop and over two, through a relay process, whose
// ratio is what a second hop costs on this machine; then calls/s of 8 callers,
// each with an interpreter of its own, locally and as 8 clients of one
// daemon. Run it once:
//
//	go test -run '^$' -bench '^BenchmarkRemoteReport$' -benchtime 1x ./integration/
func BenchmarkRemoteReport(b *testing.B) {
	rounds := envInt("SUBINTERP_BENCH_ROUNDS", 5)
	calls := envInt("SUBINTERP_BENCH_CALLS", 2000)

	d := startServeDaemon(b)
	local := interpreters.New()
	defer local.Close()
	runtimes := []struct {
		name string
		rt   *interpreters.Runtime
	}{
		{"local", local},
		{"Dial unix", d.dial(b)},
		{"Dial tcp+tls", d.dialTLS(b)},
	}

	var variants []remoteVariant
	for _, r := range runtimes {
		it, err := r.rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		defer it.Close()
		if err := it.Exec(`function echo(x) return x end`); err != nil {
			b.Fatal(err)
		}
		handoff, stop := startRelay(b, r.rt)
		defer stop()
		variants = append(variants,
			remoteVariant{"Call", r.name, func(i int) error { _, err := it.Call("echo", i); return err }, nil},
			remoteVariant{"Exec", r.name, func(int) error { return it.Exec("x = 1") }, nil},
			remoteVariant{"PrepareMain", r.name, func(i int) error { return it.PrepareMain(map[string]any{"x": i}) }, nil},
			remoteVariant{"queue hand-off via a Lua relay", r.name, handoff, nil},
			remoteVariant{"host function round trip", r.name, nil, hostRoundTrips(b, r.rt, false)},
		)
	}
	variants = append(variants, floorVariants(b)...)
	key := func(v remoteVariant) string { return v.op + " / " + v.rt }
	p50 := make(map[string][]time.Duration)
	p99 := make(map[string][]time.Duration)
	for range rounds {
		for _, v := range variants {
			lat := make([]time.Duration, 0, calls)
			if v.batch != nil {
				var err error
				if lat, err = v.batch(calls); err != nil {
					b.Fatalf("%s: %v", key(v), err)
				}
			}
			for i := 0; v.batch == nil && i < calls; i++ {
				start := time.Now()
				if err := v.fn(i); err != nil {
					b.Fatalf("%s: %v", key(v), err)
				}
				lat = append(lat, time.Since(start))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p50[key(v)] = append(p50[key(v)], lat[len(lat)/2])
			p99[key(v)] = append(p99[key(v)], lat[len(lat)*99/100])
		}
	}
	tput := remoteThroughput(b, local, d, rounds)

	var out strings.Builder
	fmt.Fprintf(&out, "\nsubinterp remote report: %d rounds of %d operations, median of per-round p50/p99; each operation's rows as a multiple of its first (local, or one hop)\n\n", rounds, calls)
	fmt.Fprintf(&out, "| %-61s | %10s | %10s | %14s |\n|---|---:|---:|---:|\n", "operation / runtime", "p50", "p99", "p50 ÷ 1st row")
	sort.SliceStable(variants, func(i, j int) bool { return opOrder(variants[i].op) < opOrder(variants[j].op) })
	base := map[string]string{} // each operation's first runtime, which the others are a multiple of
	for _, v := range variants {
		k := key(v)
		if base[v.op] == "" {
			base[v.op] = k
		}
		ratio := float64(median(p50[k])) / float64(median(p50[base[v.op]]))
		fmt.Fprintf(&out, "| %-61s | %10s | %10s | %14.2f |\n", k,
			median(p50[k]).Round(100*time.Nanosecond), median(p99[k]).Round(100*time.Nanosecond), ratio)
	}
	fmt.Fprintf(&out, "\n| 8 callers, an interpreter each | calls/s | ÷ local |\n|---|---:|---:|\n")
	for _, name := range []string{"local", "Dial unix, a client each", "Dial tcp+tls, a client each"} {
		fmt.Fprintf(&out, "| %s | %.0f | %.2f |\n", name, tput[name], tput[name]/tput["local"])
	}
	fmt.Fprintf(&out, "\ntarget: Call through the daemon ≤ 2.00× local; this machine's floor for two hops is %.2f× one (the floor rows)\n",
		float64(median(p50[floorOp+" / "+floorTwoHops]))/float64(median(p50[floorOp+" / "+floorOneHop])))
	fmt.Print(out.String())
}

// remoteVariant is one operation on one runtime, timed one at a time (fn) or n
// at once (batch).
type remoteVariant struct {
	op, rt string
	fn     func(i int) error
	batch  func(n int) ([]time.Duration, error) // n latencies at once, instead of fn
}

// serveDaemon is `subinterp serve` in a process of its own, as users run
// it, serving its Unix socket and TCP with TLS.
type serveDaemon struct {
	socket, tcp string
	tls         *tls.Config // a client's, trusting the daemon
}

// startServeDaemon builds the CLI and serves it; it is shut down when the
// benchmark ends.
func startServeDaemon(b *testing.B) *serveDaemon {
	dir := socketDir(b)
	certFile, keyFile, caPEM, err := testcert.WriteFiles(dir)
	if err != nil {
		b.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("bench-token"), 0o600); err != nil {
		b.Fatal(err)
	}
	srv := startServe(b, buildCLI(b), filepath.Join(dir, "d.sock"), "--log-level", "info",
		"--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--token-file", tokenFile)
	b.Cleanup(func() {
		_ = srv.cmd.Process.Signal(syscall.SIGTERM)
		srv.wait(b, bounded)
	})
	srv.waitLog(b, `"@message":"serving"`, 1)
	var line struct {
		TCP string `json:"tcp"`
	}
	for l := range strings.SplitSeq(srv.logs.String(), "\n") {
		if strings.Contains(l, `"@message":"serving"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				b.Fatal(err)
			}
		}
	}
	if line.TCP == "" {
		b.Fatalf("the daemon did not say its TCP address:\n%s", srv.logs.String())
	}
	return &serveDaemon{socket: srv.socket, tcp: line.TCP, tls: testcert.Client(caPEM)}
}

// dial connects a runtime to the daemon over its Unix socket; it is
// closed when the benchmark ends.
func (d *serveDaemon) dial(b *testing.B) *interpreters.Runtime {
	return d.connect(b, d.socket)
}

// dialTLS connects a runtime to the daemon over TCP with TLS.
func (d *serveDaemon) dialTLS(b *testing.B) *interpreters.Runtime {
	return d.connect(b, "tcp://"+d.tcp, interpreters.WithToken("bench-token"), interpreters.WithTLS(d.tls))
}

func (d *serveDaemon) connect(b *testing.B, addr string, opts ...interpreters.Option) *interpreters.Runtime {
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	rt, err := interpreters.Dial(ctx, addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	return rt
}

// remoteThroughput is calls/s of 8 concurrent callers, each calling an
// interpreter of its own: on a local runtime, and each through a client
// of its own to one daemon, over its Unix socket and over TCP with TLS.
func remoteThroughput(b *testing.B, local *interpreters.Runtime, d *serveDaemon, rounds int) map[string]float64 {
	const callers = 8
	const per = 500
	sets := map[string][]*interpreters.Interpreter{}
	add := func(name string, rt *interpreters.Runtime) {
		it, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { it.Close() })
		sets[name] = append(sets[name], it)
	}
	for range callers {
		add("local", local)
		add("Dial unix, a client each", d.dial(b))
		add("Dial tcp+tls, a client each", d.dialTLS(b))
	}
	run := func(its []*interpreters.Interpreter) float64 {
		var wg sync.WaitGroup
		start := time.Now()
		for _, it := range its {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if _, err := it.Call("tostring", i); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(callers*per) / time.Since(start).Seconds()
	}
	all := map[string][]float64{}
	for range rounds {
		for _, name := range []string{"local", "Dial unix, a client each", "Dial tcp+tls, a client each"} {
			all[name] = append(all[name], run(sets[name]))
		}
	}
	res := map[string]float64{}
	for name, v := range all {
		sort.Float64s(v)
		res[name] = v[len(v)/2]
	}
	return res
}

// BenchmarkRemoteCall is one Call of a trivial function: on a local
// runtime, and through a daemon over its Unix socket and over TCP with TLS.
func BenchmarkRemoteCall(b *testing.B) {
	d := startServeDaemon(b)
	local := interpreters.New()
	defer local.Close()
	for _, r := range []struct {
		name string
		rt   *interpreters.Runtime
	}{{"local", local}, {"unix", d.dial(b)}, {"tcp+tls", d.dialTLS(b)}} {
		b.Run(r.name, func(b *testing.B) {
			it, err := r.rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			if err := it.Exec(`function echo(x) return x end`); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := it.Call("echo", i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// opOrder is where an operation's rows go in the report: each operation's
// runtimes together, in the order they were measured.
func opOrder(op string) int {
	return slices.Index([]string{floorOp, "Call", "Exec", "PrepareMain", "queue hand-off via a Lua relay", "host function round trip"}, op)
}

// The floor rows: a raw msgpack round trip to an echo process, and the
// same through a relay process that forwards each frame on one goroutine,
// as the daemon's call stream does. Their ratio is what two hops cost
// against one on this machine, in this run, with nothing but the sockets
// and the codec in the way: the yardstick for Dial ÷ local.
const (
	floorOp      = "floor: raw msgpack round trip"
	floorOneHop  = "one hop"
	floorTwoHops = "two hops, via a relay process"
)

// floorVariants starts the floor's echo and relay processes, stopped when
// the benchmark ends, and gives a variant for each.
func floorVariants(b *testing.B) []remoteVariant {
	echo, err := baseline.StartRaw()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { echo.Close() })
	relay, err := baseline.StartRawRelay(echo)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { relay.Close() })
	var vs []remoteVariant
	for _, r := range []struct {
		name string
		raw  *baseline.Raw
	}{{floorOneHop, echo}, {floorTwoHops, relay}} {
		c, err := r.raw.Conn()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		vs = append(vs, remoteVariant{op: floorOp, rt: r.name, fn: func(i int) error {
			got, err := c.Echo(int64(i))
			if err == nil && got != int64(i) {
				err = fmt.Errorf("echoed %d, want %d", got, i)
			}
			return err
		}})
	}
	return vs
}
