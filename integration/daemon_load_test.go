package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// TestDaemonLoad: several clients keep a daemon's interpreters busy, every
// call is answered correctly, and stopping the daemon mid-load leaves no
// worker behind. `make test` runs a small version; SUBINTERP_LOAD=1 (make
// load) runs 200 interpreters for 30 seconds.
func TestDaemonLoad(t *testing.T) {
	// Not parallel: it saturates the CPUs, which would skew the timing of
	// the tests running beside it.
	interps, clients, duration := 20, 8, 3*time.Second
	if os.Getenv("SUBINTERP_LOAD") == "1" {
		interps, duration = 200, 30*time.Second
	}
	// The calls in flight when the load phase ends are cancelled; on a
	// machine this loaded a worker can take longer than the default kill
	// grace to stop, and being killed for it would fail the count below.
	// Only a worker that never stops should be.
	cfg := daemon.Config{ShutdownGrace: 500 * time.Millisecond}
	cfg.Supervisor.KillGrace = bounded
	d := startDaemon(t, cfg)
	setup := d.dial(t)

	// Create the interpreters, a few at a time.
	its := make([]*interpreters.Interpreter, interps)
	errs := make(chan error, interps)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range its {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			it, err := setup.Create()
			if err == nil {
				err = it.Exec("n = 0 function bump(k) n = n + k return n end")
			}
			its[i] = it
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("setting up: %v", err)
		}
	}
	var pids []int
	for _, it := range its {
		pids = append(pids, pid(t, it))
	}

	// Each client owns a share of the interpreters, so no call meets
	// another in progress: every call must succeed.
	runtimes := make([]*interpreters.Runtime, clients)
	var printed atomic.Int64
	for c := range runtimes {
		runtimes[c] = d.dial(t, interpreters.WithStdout(countWriter{&printed}))
	}
	bumps := make([]atomic.Int64, interps)
	var calls atomic.Int64
	// load runs one client until ctx ends; with shuttingDown, an
	// ErrUnavailable ends it too, and is no failure.
	load := func(ctx context.Context, c int, shuttingDown bool) error {
		rt := runtimes[c]
		if c >= interps {
			return nil
		}
		for i := c; ctx.Err() == nil; i += clients {
			if i >= interps {
				i = c
			}
			it, err := rt.Lookup(its[i].ID())
			if err == nil {
				var v any
				if v, err = it.Call("bump", 1); err == nil {
					if n := bumps[i].Add(1); v != n {
						return fmt.Errorf("interpreter %d: bump returned %v after %d bumps", it.ID(), v, n)
					}
					err = it.ExecContext(ctx, fmt.Sprintf("print(%d)", i))
				}
			}
			switch {
			case err == nil:
				calls.Add(1)
			case shuttingDown && errors.Is(err, interpreters.ErrUnavailable):
				return nil
			case ctx.Err() != nil && errors.Is(err, ctx.Err()):
				return nil
			default:
				return fmt.Errorf("client %d, interpreter %d: %w", c, its[i].ID(), err)
			}
		}
		return nil
	}
	run := func(ctx context.Context, shuttingDown bool) []error {
		errs := make([]error, clients)
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[c] = load(ctx, c, shuttingDown)
			}()
		}
		wg.Wait()
		return errs
	}

	ctx, cancel := context.WithTimeout(t.Context(), duration)
	for _, err := range run(ctx, false) {
		if err != nil {
			t.Error(err)
		}
	}
	cancel()
	t.Logf("%d interpreters, %d clients, %v: %d rounds (%.0f/s)", interps, clients, duration, calls.Load(), float64(calls.Load())/duration.Seconds())
	if calls.Load() < int64(clients) {
		t.Errorf("only %d rounds completed", calls.Load())
	}
	if printed.Load() < calls.Load()*2 {
		t.Errorf("%d rounds printed only %d bytes", calls.Load(), printed.Load())
	}
	for i, it := range its {
		if got := mustCall(t, it, "function() return n end"); got != bumps[i].Load() {
			t.Errorf("interpreter %d counted %v bumps, the clients made %d", it.ID(), got, bumps[i].Load())
		}
	}

	// Stop the daemon under load: calls end, answered or refused with
	// ErrUnavailable, and every worker is gone.
	ctx, cancel = context.WithTimeout(t.Context(), bounded)
	defer cancel()
	results := make(chan []error, 1)
	go func() {
		results <- run(ctx, true)
	}()
	time.Sleep(duration / 4)
	stopped := time.Now()
	d.stop(t)
	select {
	case errs := <-results:
		for _, err := range errs {
			if err != nil {
				t.Errorf("under shutdown: %v", err)
			}
		}
	case <-time.After(bounded):
		t.Fatal("clients still running after the daemon stopped")
	}
	t.Logf("shutdown under load took %v", time.Since(stopped))
	for _, p := range pids {
		waitGone(t, p)
	}
	if left := childPids(pids); len(left) > 0 {
		t.Errorf("workers still children of this process: %v", left)
	}
}

// childPids returns those of pids that /proc still lists as children of
// this process.
func childPids(pids []int) []int {
	var left []int
	for _, p := range pids {
		if ppid, _, _, ok := proctest.Stat(p); ok && ppid == os.Getpid() {
			left = append(left, p)
		}
	}
	return left
}

// countWriter counts the bytes written to it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}
