package integration

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

const (
	crashLeakCrashes = 100
	crashLeakLanes   = 4 // crashes run in this many goroutines at once
	// Margins for what the host may hold after the crashes beyond what it
	// held before them.
	crashLeakGoroutines = 10
	crashLeakFDs        = 5
)

// crashOnce creates an interpreter, starts a call that never ends, kills
// its worker and checks the typed failure. It returns how long the kill took
// to be reported.
func crashOnce(t *testing.T, rt *interpreters.Runtime) time.Duration {
	t.Helper()
	it := create(t, rt)
	p := pid(t, it)
	th := it.CallInThread("function() while true do end end")
	waitRunning(t, it, th.Done())
	killed := time.Now()
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", p, err)
	}
	select {
	case <-th.Done():
	case <-time.After(bounded):
		t.Fatalf("%v: the call under the killed worker %d did not return within %v", it, p, bounded)
	}
	took := time.Since(killed)
	_, err := th.Wait()
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("%v: the call under the kill returned %v (%T), want *WorkerExitError", it, err, err)
	}
	if wee.Signal != "killed" || wee.ExitCode != -1 || wee.InterpreterID != it.ID() {
		t.Errorf("%v: *WorkerExitError %+v, want Signal killed, ExitCode -1, InterpreterID %d", it, *wee, it.ID())
	}
	if !errors.Is(err, interpreters.ErrInterpreter) || errors.Is(err, interpreters.ErrMemoryLimit) {
		t.Errorf("%v: %q should match ErrInterpreter and not ErrMemoryLimit", it, err)
	}
	_, err = rt.Lookup(it.ID())
	wantNotFound(t, "Lookup right after the crashed call", err)
	waitGone(t, p)
	return took
}

// TestCrashLeak: 100 workers killed under a call each leave the host as
// they found it: no goroutine, file descriptor, interpreter or child
// process more; every kill was reported (how fast is logged here and
// measured by BenchmarkCrashReport).
//
// It does not run in parallel: it counts this process's goroutines and
// file descriptors.
func TestCrashLeak(t *testing.T) {
	backgroundCloses.Wait()
	rt := interpreters.New()
	closeAtCleanup(t, rt)
	keep := create(t, rt)
	mustExec(t, keep, "kept = 'before'")
	keepPid := pid(t, keep)

	// One crash first, so that what the runtime starts once is counted in
	// the baseline.
	crashOnce(t, rt)
	runtime.GC()
	// Taken while that crash may still be winding down, the baseline can
	// only be high, never low: the counts after are waited for.
	before := proctest.HostNow(t)
	t.Logf("before: %d goroutines, %d file descriptors, %d child processes", before.Goroutines, before.FDs, len(before.Children))

	began := time.Now()
	lats := make([]time.Duration, crashLeakCrashes)
	t.Run("crashes", func(t *testing.T) {
		for lane := range crashLeakLanes {
			t.Run(strconv.Itoa(lane), func(t *testing.T) {
				t.Parallel()
				for i := lane; i < crashLeakCrashes; i += crashLeakLanes {
					lats[i] = crashOnce(t, rt)
				}
			})
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	sorted := slices.Clone(lats)
	slices.Sort(sorted)
	t.Logf("%d crashes in %v; kill reported after p50 %v, p90 %v, max %v", crashLeakCrashes,
		time.Since(began).Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Microsecond),
		sorted[len(sorted)*9/10].Round(time.Microsecond), sorted[len(sorted)-1].Round(time.Microsecond))

	// The runtime holds the interpreter it kept, and nothing else.
	wantList(t, "ListAll after the crashes", listAll(t, rt), rt.GetMain(), keep)
	if got := pid(t, keep); got != keepPid {
		t.Errorf("the kept interpreter's worker changed from %d to %d", keepPid, got)
	}
	wantEqual(t, "the kept interpreter's state", global(t, keep, "kept"), "before")

	after := proctest.WantHostBack(t, before, crashLeakGoroutines, crashLeakFDs, fmt.Sprintf("after %d crashes", crashLeakCrashes))
	t.Logf("after: %d goroutines, %d file descriptors, %d child processes", after.Goroutines, after.FDs, len(after.Children))
}
