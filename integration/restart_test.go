package integration

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// restartLog collects the events a restart policy reports.
type restartLog struct {
	ch chan interpreters.RestartEvent
}

func newRestartLog() *restartLog {
	return &restartLog{ch: make(chan interpreters.RestartEvent, 64)}
}

// record is the policy's OnRestart.
func (l *restartLog) record(ev interpreters.RestartEvent) {
	select {
	case l.ch <- ev:
	default:
		panic("more restart events than the test can hold")
	}
}

// next waits for the next event, failing the test after bounded.
func (l *restartLog) next(t *testing.T, what string) interpreters.RestartEvent {
	t.Helper()
	select {
	case ev := <-l.ch:
		return ev
	case <-time.After(bounded):
		t.Fatalf("%s: no restart event within %v", what, bounded)
		return interpreters.RestartEvent{}
	}
}

// none fails the test if an event is waiting.
func (l *restartLog) none(t *testing.T, what string) {
	t.Helper()
	select {
	case ev := <-l.ch:
		t.Errorf("%s: unexpected restart event %+v", what, ev)
	default:
	}
}

// wantRestartEvent checks an event: which interpreter, which attempt,
// whether it gave up, and that its cause is the SIGKILL of the worker.
func wantRestartEvent(t *testing.T, what string, ev interpreters.RestartEvent, id int64, attempt int, gaveUp bool) {
	t.Helper()
	wantEqual(t, what+": InterpreterID", ev.InterpreterID, id)
	wantEqual(t, what+": Attempt", ev.Attempt, attempt)
	wantEqual(t, what+": GaveUp", ev.GaveUp, gaveUp)
	if gaveUp && ev.Err == nil {
		t.Errorf("%s: an event that gives up has no Err", what)
	}
	if !gaveUp && ev.Err != nil {
		t.Errorf("%s: Err %v, want nil for a restart that succeeded", what, ev.Err)
	}
	var wee *interpreters.WorkerExitError
	if !errors.As(ev.Cause, &wee) {
		t.Errorf("%s: Cause %v (%T), want a *WorkerExitError", what, ev.Cause, ev.Cause)
		return
	}
	wantEqual(t, what+": Cause.Signal", wee.Signal, "killed")
	wantEqual(t, what+": Cause.ExitCode", wee.ExitCode, -1)
	wantEqual(t, what+": Cause.InterpreterID", wee.InterpreterID, id)
}

// restartKill SIGKILLs the interpreter's current worker and returns its
// pid.
func restartKill(t *testing.T, it *interpreters.Interpreter) int {
	t.Helper()
	p := pid(t, it)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", p, err)
	}
	return p
}

// restartWaitIdle polls until the interpreter is there and not running:
// a restart in progress shows as running, never as not found.
func restartWaitIdle(t *testing.T, it *interpreters.Interpreter) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		running, err := it.IsRunning()
		if err != nil {
			t.Fatalf("%v.IsRunning while it restarts: %v", it, err)
		}
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v still running %v after its worker was killed", it, bounded)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restartWaitNotFound polls until the interpreter is gone.
func restartWaitNotFound(t *testing.T, rt *interpreters.Runtime, it *interpreters.Interpreter) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		_, err := rt.Lookup(it.ID())
		if errors.Is(err, interpreters.ErrInterpreterNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Lookup(%d): %v", it.ID(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v is still found %v after its policy gave up", it, bounded)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantRestartedState checks what a new worker holds: the init script's
// globals and the bindings replayed, not the globals of Exec.
func wantRestartedState(t *testing.T, what string, it *interpreters.Interpreter, want map[string]any) {
	t.Helper()
	for name, v := range want {
		wantEqual(t, what+": "+name, global(t, it, name), v)
	}
}

// TestRestartAfterKill: under a restart policy the interpreter outlives
// its worker: the call running at the kill fails with *WorkerExitError,
// the same ID goes on in a new process where the init script ran again and
// the PrepareMain bindings were replayed in order, Exec's globals are gone,
// and OnRestart hears of each restart.
func TestRestartAfterKill(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	log := newRestartLog()
	it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{
		MaxRestarts: 3,
		InitScript:  "inits = (inits or 0) + 1; from_init = 'init'",
		Backoff:     10 * time.Millisecond,
		OnRestart:   log.record,
	}))
	wantEqual(t, "the init script ran in the first worker", global(t, it, "inits"), int64(1))
	if err := it.PrepareMain(map[string]any{"bound": "first", "kept": 5}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	if err := it.PrepareMain(map[string]any{"bound": "second", "data": []byte("raw")}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	mustExec(t, it, "lost = true; inits = 99; from_init = 'changed by Exec'")
	wantEqual(t, "Exec's global before the kill", global(t, it, "lost"), true)
	want := map[string]any{
		"inits": int64(1), "from_init": "init", "bound": "second", "kept": int64(5), "data": "raw", "lost": nil,
	}

	// A kill under a call.
	before := pid(t, it)
	th := it.CallInThread("function() while true do end end")
	waitRunning(t, it, th.Done())
	restartKill(t, it)
	_, err := waitThread(t, th)
	wantWorkerKilled(t, "the call running at the kill", err, it.ID())
	// Right after, the new worker is still on its way (a call is refused
	// as if one were running) or already up; never is the interpreter gone.
	if err := it.Exec("probe = 1"); err != nil && !errors.Is(err, interpreters.ErrAlreadyRunning) {
		t.Errorf("Exec right after the killed call: %v, want success or ErrAlreadyRunning", err)
	}
	wantRestartEvent(t, "the first restart", log.next(t, "the first restart"), it.ID(), 1, false)
	restartWaitIdle(t, it)
	after := pid(t, it)
	if after == before || after <= 0 {
		t.Errorf("the pid after the restart is %d, before it %d: want a new process", after, before)
	}
	waitGone(t, before)
	if got, err := rt.Lookup(it.ID()); err != nil || got != it {
		t.Errorf("Lookup(%d) after the restart = %v, %v; want the same *Interpreter", it.ID(), got, err)
	}
	if !contains(listAll(t, rt), it) {
		t.Errorf("ListAll after the restart does not list %v", it)
	}
	wantRestartedState(t, "after the first restart", it, want)
	wantEqual(t, "a call after the restart", mustCall(t, it, "string.upper", "ok"), "OK")

	// A kill while idle; bindings made since the last restart are
	// replayed too.
	if err := it.PrepareMain(map[string]any{"late": true}); err != nil {
		t.Fatalf("PrepareMain after the restart: %v", err)
	}
	mustExec(t, it, "lost = 'again'")
	before = restartKill(t, it)
	wantRestartEvent(t, "the second restart", log.next(t, "the second restart"), it.ID(), 2, false)
	restartWaitIdle(t, it)
	if after = pid(t, it); after == before {
		t.Errorf("the pid after the second restart is still %d", after)
	}
	waitGone(t, before)
	want["late"] = true
	wantRestartedState(t, "after the second restart", it, want)
	log.none(t, "after two restarts")
	wantRunning(t, it, false)
}

// TestRestartGivesUp: past MaxRestarts within Period the policy gives up:
// OnRestart hears GaveUp and the interpreter is gone.
func TestRestartGivesUp(t *testing.T) {
	t.Parallel()
	for _, maxRestarts := range []int{0, 1} {
		t.Run(fmt.Sprintf("MaxRestarts %d", maxRestarts), func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			log := newRestartLog()
			it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{
				MaxRestarts: maxRestarts,
				Period:      time.Hour,
				Backoff:     10 * time.Millisecond,
				OnRestart:   log.record,
			}))
			for attempt := 1; attempt <= maxRestarts; attempt++ {
				old := restartKill(t, it)
				wantRestartEvent(t, fmt.Sprintf("restart %d", attempt), log.next(t, "a restart"), it.ID(), attempt, false)
				restartWaitIdle(t, it)
				waitGone(t, old)
			}
			last := pid(t, it)
			th := it.CallInThread("function() while true do end end")
			waitRunning(t, it, th.Done())
			restartKill(t, it)
			_, err := waitThread(t, th)
			wantWorkerKilled(t, "the call under the last kill", err, it.ID())
			wantRestartEvent(t, "the last kill", log.next(t, "giving up"), it.ID(), maxRestarts+1, true)

			restartWaitNotFound(t, rt, it)
			wantNotFound(t, "Exec after the policy gave up", it.Exec("x = 1"))
			_, err = it.IsRunning()
			wantNotFound(t, "IsRunning after the policy gave up", err)
			_, err = it.Pid()
			wantNotFound(t, "Pid after the policy gave up", err)
			wantNotFound(t, "Close after the policy gave up", it.Close())
			wantList(t, "ListAll after the policy gave up", listAll(t, rt), rt.GetMain())
			waitGone(t, last)
			log.none(t, "after giving up")
			// The runtime goes on.
			wantEqual(t, "a new interpreter", mustCall(t, create(t, rt), "string.upper", "ok"), "OK")
		})
	}
}

// TestRestartPeriodWindow: restarts older than Period no longer count, so
// a policy of one restart per window restarts again once the window has
// passed; every restart is the first of its window.
func TestRestartPeriodWindow(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	log := newRestartLog()
	// Each restart waits out its 20 ms backoff after being counted, so by
	// the next kill the 1 ms window holds no restart.
	it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{
		MaxRestarts: 1,
		Period:      time.Millisecond,
		Backoff:     20 * time.Millisecond,
		OnRestart:   log.record,
	}))
	for i := range 3 {
		old := restartKill(t, it)
		wantRestartEvent(t, fmt.Sprintf("kill %d", i), log.next(t, "a restart"), it.ID(), 1, false)
		restartWaitIdle(t, it)
		waitGone(t, old)
	}
	mustExec(t, it, "x = 1")
	wantEqual(t, "a global after the restarts", global(t, it, "x"), int64(1))
}

// TestRestartInitScriptFails: an init script that fails in the first
// worker fails Create, and leaves nothing behind.
func TestRestartInitScriptFails(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it, err := rt.Create(interpreters.WithRestart(interpreters.RestartPolicy{MaxRestarts: 1, InitScript: "error('boom in init', 0)"}))
	if err == nil {
		t.Fatalf("Create with a failing init script returned %v and no error", it)
	}
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("Create with a failing init script: %q (%T) should match ErrInterpreter", err, err)
	}
	if !strings.Contains(err.Error(), "boom in init") {
		t.Errorf("Create with a failing init script: %q does not say why", err)
	}
	wantList(t, "ListAll after the failed Create", listAll(t, rt), rt.GetMain())
}

// TestRestartWithWarmSpares: a restart may take a warm spare for the new
// worker; the interpreter keeps its kind and limits, and its init script
// and bindings are there.
func TestRestartWithWarmSpares(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, interpreters.WithWarmSpares(1))
	sparesWait(t, rt, 1)
	log := newRestartLog()
	it := create(t, rt, interpreters.WithStdlib(), interpreters.WithCPULimit(200*time.Millisecond),
		interpreters.WithRestart(interpreters.RestartPolicy{
			MaxRestarts: 2,
			InitScript:  "from_init = 'init'",
			Backoff:     10 * time.Millisecond,
			OnRestart:   log.record,
		}))
	if err := it.PrepareMain(map[string]any{"bound": "yes"}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	sparesWait(t, rt, 1) // the restart below finds a spare ready
	old := restartKill(t, it)
	wantRestartEvent(t, "the restart", log.next(t, "the restart"), it.ID(), 1, false)
	restartWaitIdle(t, it)
	waitGone(t, old)
	wantRestartedState(t, "after the restart", it, map[string]any{"from_init": "init", "bound": "yes"})
	wantEqual(t, "the stdlib after the restart", mustCall(t, it, "function() return type(io) == 'table' and type(io.open) == 'function' end"), true)
	wantErr(t, "a busy loop past the CPU limit after the restart", it.Exec("while true do end"), interpreters.ErrCPULimit)
}

// restartChildPids returns the pids of this process's children.
func restartChildPids(*testing.T) map[int]bool {
	out := map[int]bool{}
	for _, p := range proctest.Children() {
		out[p] = true
	}
	return out
}

// restartNewChildren lists the children that are not in before.
func restartNewChildren(t *testing.T, before map[int]bool) []string {
	t.Helper()
	var out []string
	for _, p := range proctest.Children() {
		if !before[p] {
			out = append(out, proctest.Describe(p))
		}
	}
	return out
}

// restartNoLeftovers runs f with a runtime of its own, which f closes, and
// fails the test if a child process that was not there before is there
// once f has returned. It is used by tests that do not run in parallel, so
// the children of other tests do not come and go meanwhile.
func restartNoLeftovers(t *testing.T, opts []interpreters.Option, f func(rt *interpreters.Runtime)) {
	t.Helper()
	backgroundCloses.Wait() // earlier tests' runtimes are reaped
	before := restartChildPids(t)
	rt := interpreters.New(opts...)
	t.Cleanup(func() { _ = rt.Close() })
	f(rt)
	if left := restartNewChildren(t, before); len(left) > 0 {
		t.Errorf("after Runtime.Close returned, %d worker process(es) are left: %v", len(left), left)
	}
}

// restartClose closes rt, failing the test if that does not return within
// bounded.
func restartClose(t *testing.T, rt *interpreters.Runtime) {
	t.Helper()
	op := start(func() (any, error) { return nil, rt.Close() })
	if _, err := op.wait(t); err != nil {
		t.Errorf("Runtime.Close: %v", err)
	}
}

// TestRestartCloseReapsProcesses: closing the runtime while an
// interpreter waits to restart, while its new worker starts, or after
// restarts, returns promptly and leaves no worker process. No t.Parallel:
// it counts this process's children.
func TestRestartCloseReapsProcesses(t *testing.T) {
	t.Run("during the backoff", func(t *testing.T) {
		restartNoLeftovers(t, nil, func(rt *interpreters.Runtime) {
			it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{MaxRestarts: 5, Backoff: time.Hour, MaxBackoff: time.Hour}))
			old := restartKill(t, it)
			waitGone(t, old)
			// The backoff is an hour: once the interpreter shows as
			// running, it stays so for the rest of the test.
			deadline := time.Now().Add(bounded)
			for {
				running, err := it.IsRunning()
				if err != nil {
					t.Fatalf("IsRunning while waiting to restart: %v", err)
				}
				if running {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%v not shown running within %v of its worker's death", it, bounded)
				}
				time.Sleep(5 * time.Millisecond)
			}
			wantAlreadyRunning(t, it, "Exec while waiting to restart", it.Exec("x = 1"))
			_, err := it.Call("tostring", 1)
			wantAlreadyRunning(t, it, "Call while waiting to restart", err)
			wantAlreadyRunning(t, it, "PrepareMain while waiting to restart", it.PrepareMain(map[string]any{"x": 1}))
			if !contains(listAll(t, rt), it) {
				t.Errorf("ListAll while waiting to restart does not list %v", it)
			}
			restartClose(t, rt)
			_, err = it.IsRunning()
			wantNotFound(t, "IsRunning after Runtime.Close", err)
		})
	})
	t.Run("while the new worker starts", func(t *testing.T) {
		for i := range 3 {
			restartNoLeftovers(t, nil, func(rt *interpreters.Runtime) {
				it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{
					MaxRestarts: 5, Backoff: time.Duration(i+1) * time.Millisecond, InitScript: "x = 1",
				}))
				old := restartKill(t, it)
				waitGone(t, old)
				restartClose(t, rt)
			})
		}
	})
	t.Run("after restarts", func(t *testing.T) {
		restartNoLeftovers(t, nil, func(rt *interpreters.Runtime) {
			log := newRestartLog()
			it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{MaxRestarts: 5, Backoff: 5 * time.Millisecond, OnRestart: log.record}))
			other := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{MaxRestarts: 5, Backoff: 5 * time.Millisecond}))
			var pids []int
			for i := range 2 {
				pids = append(pids, restartKill(t, it))
				wantRestartEvent(t, fmt.Sprintf("restart %d", i+1), log.next(t, "a restart"), it.ID(), i+1, false)
				restartWaitIdle(t, it)
			}
			last := pid(t, it)
			if err := it.Close(); err != nil {
				t.Fatalf("Close after restarts: %v", err)
			}
			waitGone(t, last)
			for _, p := range pids {
				waitGone(t, p)
			}
			_, err := rt.Lookup(it.ID())
			wantNotFound(t, "Lookup after Close", err)
			log.none(t, "after Close")
			otherPid := pid(t, other)
			restartClose(t, rt)
			waitGone(t, otherPid)
		})
	})
}

// sparesWait polls until the runtime has n spare workers ready, failing
// the test if it ever reports more than want or after bounded.
func sparesWait(t *testing.T, rt *interpreters.Runtime, want int) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		n := rt.WarmSpares()
		if n > want {
			t.Fatalf("WarmSpares() = %d, more than the %d asked for", n, want)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WarmSpares() = %d after %v, want %d", n, bounded, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSparesWarm: a runtime with warm spares keeps that many workers
// ready, lists none of them as interpreters, and Create (one at a time or
// many at once) gives working interpreters while the spares are refilled.
func TestSparesWarm(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, interpreters.WithWarmSpares(2))
	sparesWait(t, rt, 2)
	wantList(t, "ListAll with only spares", listAll(t, rt), rt.GetMain())

	it := create(t, rt)
	mustExec(t, it, "x = 41")
	wantEqual(t, "a call in an interpreter from a spare", mustCall(t, it, "function() return x + 1 end"), int64(42))
	wantList(t, "ListAll after Create", listAll(t, rt), rt.GetMain(), it)
	sparesWait(t, rt, 2)

	// More at once than there are spares.
	const n = 4
	its := make([]*interpreters.Interpreter, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			its[i], errs[i] = rt.Create()
		}()
	}
	wg.Wait()
	pids := map[int]bool{pid(t, it): true}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent Create %d: %v", i, errs[i])
		}
		wantEqual(t, fmt.Sprintf("interpreter %d's own ID", i), mustCall(t, its[i], `function() return require("interpreters").get_current().id end`), its[i].ID())
		p := pid(t, its[i])
		if pids[p] {
			t.Errorf("two interpreters share the worker process %d", p)
		}
		pids[p] = true
	}
	if got := len(listAll(t, rt)); got != n+2 {
		t.Errorf("ListAll lists %d interpreters, want main and %d", got, n+1)
	}
	sparesWait(t, rt, 2)
	// Interpreters from spares are isolated from each other.
	mustExec(t, its[0], "x = 'mine'")
	wantEqual(t, "a global of another interpreter", global(t, its[1], "x"), nil)

	if rt2 := newRuntime(t); rt2.WarmSpares() != 0 {
		t.Errorf("a runtime without WithWarmSpares reports %d spares", rt2.WarmSpares())
	}
}

// TestSparesKindAndLimits: an interpreter made from a spare is the kind
// Create asked for (the full stdlib or the sandbox) and its limits apply,
// whether given to Create or as the runtime's defaults.
func TestSparesKindAndLimits(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, interpreters.WithWarmSpares(2))
	const hasIO = "function() return type(io) == 'table' and type(io.open) == 'function' end"

	sparesWait(t, rt, 2)
	std := create(t, rt, interpreters.WithStdlib())
	wantEqual(t, "io.open in a WithStdlib interpreter from a spare", mustCall(t, std, hasIO), true)
	wantEqual(t, "os.getenv in a WithStdlib interpreter from a spare", mustCall(t, std, "function() return type(os) == 'table' and type(os.getenv) == 'function' end"), true)

	sparesWait(t, rt, 2)
	plain := create(t, rt)
	wantEqual(t, "io.open in a sandboxed interpreter from a spare", mustCall(t, plain, hasIO), false)

	sparesWait(t, rt, 2)
	cpu := create(t, rt, interpreters.WithCPULimit(200*time.Millisecond))
	err, _ := isoExec(t, t.Context(), cpu, "while true do end", bounded)
	wantErr(t, "a busy loop past WithCPULimit in an interpreter from a spare", err, interpreters.ErrCPULimit)

	sparesWait(t, rt, 2)
	var out syncBuffer
	loud := create(t, rt, interpreters.WithOutputLimit(8), interpreters.WithStdout(&out))
	wantErr(t, "printing past WithOutputLimit in an interpreter from a spare", loud.Exec("print(string.rep('x', 100))"), interpreters.ErrOutputLimit)
	if n := len(out.String()); n > 8 {
		t.Errorf("%d bytes reached the writer past an 8-byte output limit", n)
	}

	// The runtime's default limits reach an interpreter from its spares.
	limited := newRuntime(t, interpreters.WithWarmSpares(1), interpreters.WithCPULimit(200*time.Millisecond))
	sparesWait(t, limited, 1)
	it := create(t, limited)
	err, _ = isoExec(t, t.Context(), it, "while true do end", bounded)
	wantErr(t, "a busy loop past the runtime's CPU limit in an interpreter from a spare", err, interpreters.ErrCPULimit)
}

// TestSparesCloseLeavesNoProcess: closing a runtime reaps its spares, the
// ready ones and those still starting, and its interpreters. No
// t.Parallel: it counts this process's children.
func TestSparesCloseLeavesNoProcess(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		restartNoLeftovers(t, []interpreters.Option{interpreters.WithWarmSpares(2)}, func(rt *interpreters.Runtime) {
			sparesWait(t, rt, 2)
			it := create(t, rt)
			mustExec(t, it, "x = 1")
			sparesWait(t, rt, 2)
			restartClose(t, rt)
			if n := rt.WarmSpares(); n != 0 {
				t.Errorf("WarmSpares() = %d after Close", n)
			}
			if _, err := rt.Create(); err == nil {
				t.Error("Create after Runtime.Close succeeded")
			}
		})
	})
	t.Run("starting", func(t *testing.T) {
		restartNoLeftovers(t, []interpreters.Option{interpreters.WithWarmSpares(3)}, func(rt *interpreters.Runtime) {
			_ = rt.WarmSpares() // starts the runtime, and its spares with it
			restartClose(t, rt)
		})
	})
}
