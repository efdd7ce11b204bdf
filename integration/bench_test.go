package integration

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/baseline"
	"github.com/subinterp/subinterp/internal/launchbench"
	"github.com/subinterp/subinterp/interpreters"
)

// The benchmarks below put subinterp beside its baselines in one run, so
// ratios hold on a noisy machine: the floor is a raw unix-socket msgpack
// ping-pong between two processes, the peer a stock go-plugin net/rpc echo
// plugin.

// BenchmarkRoundTrip measures one trivial call and its reply.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("floor-raw-unix-msgpack", func(b *testing.B) {
		raw, err := baseline.StartRaw()
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		conn, err := raw.Conn()
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := conn.Echo(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-plugin-netrpc", func(b *testing.B) {
		p, err := baseline.StartPlugin()
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := p.Echo(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-process-gopher-lua", func(b *testing.B) {
		l := baseline.NewInProcessLua()
		defer l.Close()
		for i := 0; i < b.N; i++ {
			if _, err := l.Call(int64(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subinterp-call", func(b *testing.B) {
		rt := interpreters.New()
		defer rt.Close()
		interp, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		if err := interp.Exec(`function echo(x) return x end`); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := interp.Call("echo", i); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One op is one Lua call of an empty host function: a request on the
	// call channel and its answer, the script's side of the floor's echo.
	b.Run("subinterp-host-function", func(b *testing.B) { benchHostFunc(b, false) })
	// The same in a call with a deadline, which must be able to end while
	// a host function runs: the call's reading moves off the caller's
	// goroutine once, at its first host function.
	b.Run("subinterp-host-function-deadline", func(b *testing.B) { benchHostFunc(b, true) })
}

func benchHostFunc(b *testing.B, deadline bool) {
	rt := interpreters.New(interpreters.WithFunc("empty", func(context.Context, ...any) (any, error) { return nil, nil }))
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if deadline {
		ctx, cancel = context.WithTimeout(ctx, time.Hour)
	}
	defer cancel()
	if _, err := interp.CallContext(ctx, hostLoop, 1); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if _, err := interp.CallContext(ctx, hostLoop, b.N); err != nil {
		b.Fatal(err)
	}
}

// hostLoop calls the host function "empty" n times.
const hostLoop = `function(n) local f = require("host").empty for _ = 1, n do f() end end`

// BenchmarkBusy8 measures calls with 8 callers at once, each on an
// interpreter of its own, beside the floor with 8 raw connections; ns/op is
// per call across all callers, so ops/s is the aggregate rate.
func BenchmarkBusy8(b *testing.B) {
	const callers = 8
	b.Run("floor-raw-unix-msgpack", func(b *testing.B) {
		raw, err := baseline.StartRaw()
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		conns := make([]*baseline.RawConn, callers)
		for k := range conns {
			if conns[k], err = raw.Conn(); err != nil {
				b.Fatal(err)
			}
			defer conns[k].Close()
		}
		busy(b, callers, func(k, i int) error { _, err := conns[k].Echo(int64(i)); return err })
	})
	// The floor again, with a server process per caller as subinterp has
	// a worker per interpreter: what the same 8 round trips cost once they
	// are spread over 8 processes.
	b.Run("floor-raw-unix-msgpack-8-processes", func(b *testing.B) {
		conns := rawServers(b, callers)
		busy(b, callers, func(k, i int) error { _, err := conns[k].Echo(int64(i)); return err })
	})
	b.Run("subinterp-call", func(b *testing.B) {
		rt := interpreters.New()
		defer rt.Close()
		interps := make([]*interpreters.Interpreter, callers)
		for k := range interps {
			it, err := rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			interps[k] = it
		}
		busy(b, callers, func(k, i int) error { _, err := interps[k].Call("tostring", i); return err })
	})
}

// rawServers starts n raw echo servers, a process each, and returns a
// connection to each; they end when b does.
func rawServers(b *testing.B, n int) []*baseline.RawConn {
	conns := make([]*baseline.RawConn, n)
	for k := range conns {
		raw, err := baseline.StartRaw()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = raw.Close() })
		if conns[k], err = raw.Conn(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conns[k].Close() })
	}
	return conns
}

// busy runs b.N ops split among callers goroutines, op(k, i) for caller k.
func busy(b *testing.B, callers int, op func(k, i int) error) {
	var wg sync.WaitGroup
	b.ResetTimer()
	for k := 0; k < callers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < b.N; i += callers {
				if err := op(k, i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkLaunch measures starting a worker until it answers, in a host
// that links heavy packages (this test binary links gRPC, protobuf,
// Prometheus and the NATS server), beside the start of a program linking
// only gopher-lua and msgpack. integration/density's BenchmarkLaunch does
// the same in a light host.
func BenchmarkLaunch(b *testing.B) {
	b.Run("bare-luamsgpack-start", launchbench.BareStart)
	b.Run("go-plugin-launch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := baseline.LaunchPlugin(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("subinterp-create-cold", launchbench.CreateCold)
	b.Run("subinterp-create-call-close", func(b *testing.B) {
		// The same span as go-plugin-launch: start, first call, stop.
		rt := interpreters.New()
		defer rt.Close()
		for i := 0; i < b.N; i++ {
			interp, err := rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := interp.Call("tostring", i); err != nil {
				b.Fatal(err)
			}
			if err := interp.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCrashReport measures how long a call takes to fail after its
// worker is SIGKILLed: from the kill to the *WorkerExitError.
func BenchmarkCrashReport(b *testing.B) {
	rt := interpreters.New()
	defer rt.Close()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		interp, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		pid, err := interp.Pid()
		if err != nil {
			b.Fatal(err)
		}
		th := interp.CallInThread("function() while true do end end")
		for running, _ := interp.IsRunning(); !running; running, _ = interp.IsRunning() {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond) // let the call reach the VM
		b.StartTimer()
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		var we *interpreters.WorkerExitError
		if _, err := th.Wait(); !errors.As(err, &we) {
			b.Fatalf("got %v, want a *WorkerExitError", err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/report")
}
