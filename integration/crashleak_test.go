package integration

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

// hostState is what the host holds that interpreters coming and going
// must give back: goroutines, open file descriptors, child processes.
type hostState struct {
	goroutines, fds int
	children        map[int]bool
}

// hostNow is the host's state.
func hostNow(t *testing.T) hostState {
	t.Helper()
	h := hostState{goroutines: runtime.NumGoroutine(), fds: openFDs(t), children: make(map[int]bool)}
	for _, p := range isoChildPids() {
		h.children[p] = true
	}
	return h
}

// wantHostBack waits, for up to 10 s, until the host holds at most before's
// goroutines and file descriptors plus their slack, and no child process
// before did not have; then it fails t for whatever is still over, saying
// after what. It returns the state it ended with.
func wantHostBack(t *testing.T, before hostState, goroutineSlack, fdSlack int, after string) hostState {
	t.Helper()
	var now hostState
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		now, left = hostNow(t), nil
		for p := range now.children {
			if !before.children[p] {
				left = append(left, isoDescribePid(p))
			}
		}
		if (now.goroutines <= before.goroutines+goroutineSlack && now.fds <= before.fds+fdSlack && len(left) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if now.goroutines > before.goroutines+goroutineSlack {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines %s, %d before: leaked\n%s", now.goroutines, after, before.goroutines, buf)
	}
	if now.fds > before.fds+fdSlack {
		t.Errorf("%d open file descriptors %s, %d before: leaked", now.fds, after, before.fds)
	}
	if len(left) > 0 {
		t.Errorf("%d new child process(es) %s:\n\t%s", len(left), after, strings.Join(left, "\n\t"))
	}
	return now
}

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
	time.Sleep(50 * time.Millisecond)
	before := hostNow(t)
	t.Logf("before: %d goroutines, %d file descriptors, %d child processes", before.goroutines, before.fds, len(before.children))

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

	after := wantHostBack(t, before, crashLeakGoroutines, crashLeakFDs, fmt.Sprintf("after %d crashes", crashLeakCrashes))
	t.Logf("after: %d goroutines, %d file descriptors, %d child processes", after.goroutines, after.fds, len(after.children))
}
