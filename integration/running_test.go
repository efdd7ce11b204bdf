package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// TestAlreadyRunning: while a call runs, a second Exec, Call, PrepareMain
// or Close fails at once with ErrAlreadyRunning; nothing waits or queues.
func TestAlreadyRunning(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "before = 'set'")
	if err := it.PrepareMain(map[string]any{"spam": true}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	wantRunning(t, it, false)
	p := pid(t, it)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loop := startExec(ctx, it, "while true do end")
	waitRunning(t, it, loop.done)

	wantAlreadyRunning(t, it, "Exec", it.Exec("queued = true"))
	wantAlreadyRunning(t, it, "ExecContext", it.ExecContext(t.Context(), "queued = true"))
	_, err := it.Call("function() queued = true end")
	wantAlreadyRunning(t, it, "Call", err)
	_, err = it.CallContext(t.Context(), "function() queued = true end")
	wantAlreadyRunning(t, it, "CallContext", err)
	wantAlreadyRunning(t, it, "PrepareMain", it.PrepareMain(map[string]any{"spam": false, "queued": true}))
	_, err = waitThread(t, it.CallInThread("function() queued = true end"))
	wantAlreadyRunning(t, it, "CallInThread", err)
	wantAlreadyRunning(t, it, "Close", it.Close())

	// The refused Close closed nothing.
	wantRunning(t, it, true)
	if got, err := rt.Lookup(it.ID()); err != nil || got != it {
		t.Errorf("Lookup after the refused Close = %v, %v", got, err)
	}
	if !alive(p) {
		t.Errorf("worker %d is gone after the refused Close", p)
	}
	// The loop cannot end by itself, so every refusal above came at once.
	if loop.finished() {
		_, err := loop.wait(t)
		t.Fatalf("the endless loop returned (%v) before it was cancelled", err)
	}

	cancel()
	if _, err := loop.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled loop: %v, want context.Canceled", err)
	}
	if workerDead(p) {
		// Allowed when the VM does not stop within the grace period (a
		// starved machine); then the interpreter must be gone.
		t.Logf("worker %d was killed instead of stopping", p)
		wantGone(t, rt, it)
		return
	}
	wantRunning(t, it, false)
	// Nothing refused ran later, and what was bound before is intact.
	wantEqual(t, "queued", global(t, it, "queued"), nil)
	wantEqual(t, "spam", global(t, it, "spam"), true)
	wantEqual(t, "before", global(t, it, "before"), "set")
	if err := it.Close(); err != nil {
		t.Errorf("Close once idle: %v", err)
	}
}

// TestIsRunningFinished: IsRunning is false once Exec has returned.
func TestIsRunningFinished(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	wantRunning(t, it, false)
	mustExec(t, it, "x = 1")
	wantRunning(t, it, false)
	mustCall(t, it, "tostring", 1)
	wantRunning(t, it, false)
	if err := it.Exec("error('boom', 0)"); err == nil {
		t.Fatal("error() did not fail Exec")
	}
	wantRunning(t, it, false)
}

// TestIsRunningDuringLongCall: a finite loop of some hundred milliseconds
// shows the interpreter running while it runs and idle the moment the call
// has returned.
func TestIsRunningDuringLongCall(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	const loop = "function(n) local x = 0 for i = 1, n do x = x + i end return n end"
	// Size the loop for this machine: about 400 ms.
	n := 200_000
	for {
		began := time.Now()
		mustCall(t, it, loop, n)
		took := time.Since(began)
		if took >= 400*time.Millisecond || n >= 1<<30 {
			break
		}
		if took < 10*time.Millisecond {
			n *= 16
		} else {
			n = int(float64(n) * float64(400*time.Millisecond) / float64(took) * 1.2)
		}
	}
	th := it.CallInThread(loop, n)
	waitRunning(t, it, th.Done())
	res, err := waitThread(t, th)
	if err != nil {
		t.Fatalf("long call: %v", err)
	}
	// No polling: false at once.
	wantRunning(t, it, false)
	wantEqual(t, "long call result", res, int64(n))
}

// TestOtherInterpretersRunInParallel: a call running in one interpreter
// does not block another.
func TestOtherInterpretersRunInParallel(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	busy, free := create(t, rt), create(t, rt)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loop := startExec(ctx, busy, "while true do end")
	waitRunning(t, busy, loop.done)
	wantRunning(t, free, false)
	mustExec(t, free, "x = 41")
	wantEqual(t, "call in the free interpreter", mustCall(t, free, "function() return x + 1 end"), int64(42))
	// Both at once.
	loop2 := startExec(ctx, free, "while true do end")
	waitRunning(t, free, loop2.done)
	wantRunning(t, busy, true)
	cancel()
	for _, l := range []*async{loop, loop2} {
		if _, err := l.wait(t); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled loop: %v, want context.Canceled", err)
		}
	}
}

// TestContextAlreadyDone: an already-cancelled or expired context returns
// its error at once, running nothing.
func TestContextAlreadyDone(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "ran = false")

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()

	err := it.ExecContext(cancelled, "ran = true")
	wantErr(t, "ExecContext with a cancelled context", err, context.Canceled)
	_, err = it.CallContext(cancelled, "function() ran = true return 1 end")
	wantErr(t, "CallContext with a cancelled context", err, context.Canceled)
	err = it.ExecContext(expired, "ran = true")
	wantErr(t, "ExecContext with an expired context", err, context.DeadlineExceeded)
	_, err = it.CallContext(expired, "function() ran = true return 1 end")
	wantErr(t, "CallContext with an expired context", err, context.DeadlineExceeded)

	wantEqual(t, "ran", global(t, it, "ran"), false)
	wantRunning(t, it, false)
}

// interruptCase is Lua code that runs until its context ends.
type interruptCase struct {
	name     string
	deadline bool // the context expires; otherwise it is cancelled once the code runs
	run      func(ctx context.Context, it *interpreters.Interpreter) error
}

var interruptCases = []interruptCase{
	{"ExecContext cancelled", false, func(ctx context.Context, it *interpreters.Interpreter) error {
		return it.ExecContext(ctx, "counter = 0 print('started') while true do counter = counter + 1 end")
	}},
	{"CallContext cancelled", false, func(ctx context.Context, it *interpreters.Interpreter) error {
		_, err := it.CallContext(ctx, "function() counter = 0 print('started') while true do counter = counter + 1 end end")
		return err
	}},
	{"ExecContext past its deadline", true, func(ctx context.Context, it *interpreters.Interpreter) error {
		return it.ExecContext(ctx, "counter = 0 print('started') while true do counter = counter + 1 end")
	}},
	{"CallContext past its deadline", true, func(ctx context.Context, it *interpreters.Interpreter) error {
		_, err := it.CallContext(ctx, "function() counter = 0 print('started') while true do counter = counter + 1 end end")
		return err
	}},
}

// interruptOnce runs tc in a fresh interpreter and checks the outcome. The
// call must fail with the context's error, never *ExecutionFailed or
// *WorkerExitError. If the VM stopped cleanly, the interpreter keeps its
// process and state and it reports true; if its worker was killed instead,
// the interpreter must be gone, and it reports false.
func interruptOnce(t *testing.T, rt *interpreters.Runtime, tc interruptCase) bool {
	t.Helper()
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	p := pid(t, it)
	mustExec(t, it, "kept = 'yes'")
	var (
		ctx    context.Context
		cancel context.CancelFunc
		want   error
	)
	if tc.deadline {
		ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
		want = context.DeadlineExceeded
	} else {
		ctx, cancel = context.WithCancel(t.Context())
		want = context.Canceled
	}
	defer cancel()
	op := start(func() (any, error) { return nil, tc.run(ctx, it) })
	if !tc.deadline {
		// Cancel once the Lua code is under way: its print has arrived.
		deadline := time.Now().Add(bounded)
		for !strings.Contains(out.String(), "started") {
			if op.finished() || time.Now().After(deadline) {
				cancel()
				_, err := op.wait(t)
				t.Fatalf("%s: the loop never reported it started (call returned %v)", tc.name, err)
			}
			time.Sleep(time.Millisecond)
		}
		wantRunning(t, it, true)
		cancel()
	}
	_, err := op.wait(t)
	wantErr(t, tc.name, err, want)
	var ef *interpreters.ExecutionFailed
	var wee *interpreters.WorkerExitError
	if errors.As(err, &ef) || errors.As(err, &wee) {
		t.Errorf("%s: got %T %q, want the context's error", tc.name, err, err)
	}
	if workerDead(p) {
		t.Logf("%s: worker %d was killed instead of stopping", tc.name, p)
		wantGone(t, rt, it)
		return false
	}
	wantRunning(t, it, false)
	if got := pid(t, it); got != p {
		t.Errorf("%s: pid %d after the interrupt, was %d", tc.name, got, p)
	}
	wantEqual(t, tc.name+": global set before", global(t, it, "kept"), "yes")
	// What ran before the interrupt stays done.
	if strings.Contains(out.String(), "started") {
		if c, ok := global(t, it, "counter").(int64); !ok || c < 0 {
			t.Errorf("%s: counter = %#v, want the count the interrupted loop reached", tc.name, global(t, it, "counter"))
		}
	}
	mustExec(t, it, "kept = kept .. '!'")
	wantEqual(t, tc.name+": usable after", global(t, it, "kept"), "yes!")
	return true
}

// TestInterrupt: cancelling the context, or its deadline passing, stops
// running Lua promptly; the VM stops cleanly, so the interpreter keeps its
// process and its state. A worker may only be killed when its VM does not
// stop within the grace period, which on a busy machine can happen once;
// three kills in a row for a plain loop are a failure.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for _, tc := range interruptCases {
		clean := false
		for attempt := 0; attempt < 3 && !clean; attempt++ {
			clean = interruptOnce(t, rt, tc)
		}
		if !clean {
			t.Errorf("%s: in 3 attempts the VM never stopped cleanly; its worker was killed every time", tc.name)
		}
	}
}

// TestDeadlineNotReached: a deadline that does not pass changes nothing.
func TestDeadlineNotReached(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	if err := it.ExecContext(ctx, "kept = 42"); err != nil {
		t.Fatalf("ExecContext within its deadline: %v", err)
	}
	got, err := it.CallContext(ctx, "function() kept = kept + 1 return kept end")
	if err != nil {
		t.Fatalf("CallContext within its deadline: %v", err)
	}
	wantEqual(t, "kept", got, int64(43))
}

// wantGone checks that an interpreter whose worker was killed is gone.
func wantGone(t *testing.T, rt *interpreters.Runtime, it *interpreters.Interpreter) {
	t.Helper()
	_, err := rt.Lookup(it.ID())
	wantNotFound(t, "Lookup of an interpreter whose worker was killed", err)
	err = it.Exec("x = 1")
	wantNotFound(t, "Exec in an interpreter whose worker was killed", err)
}

// TestCancelNeverHangs: Lua that swallows the interrupt with pcall still
// cannot keep a cancelled call alive. Either the VM stopped cleanly and the
// interpreter is usable, or its worker was killed and it is gone.
func TestCancelNeverHangs(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	other := create(t, rt)
	for _, src := range []string{
		"while true do pcall(function() while true do end end) end",
		"while true do pcall(error, 'again') end",
	} {
		it := create(t, rt)
		ctx, cancel := context.WithCancel(t.Context())
		op := startExec(ctx, it, src)
		waitRunning(t, it, op.done)
		cancel()
		_, err := op.wait(t)
		wantErr(t, "cancelled "+src, err, context.Canceled)
		// Right after the cancelled call: usable, or gone for good.
		if err := it.Exec("x = 1"); err != nil {
			wantNotFound(t, fmt.Sprintf("Exec after the cancelled %q (its worker was killed, so the interpreter should be gone)", src), err)
			_, lerr := rt.Lookup(it.ID())
			wantNotFound(t, "Lookup of the killed interpreter", lerr)
		} else {
			wantRunning(t, it, false)
		}
	}
	wantEqual(t, "other interpreter", mustCall(t, other, "tostring", 7), "7")
}

// TestConcurrentCallsOneInterpreter: calls racing for one interpreter
// either run or fail at once with ErrAlreadyRunning; none waits, none
// fails otherwise.
func TestConcurrentCallsOneInterpreter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "runs = 0 function work(n) runs = runs + 1 local x = 0 for i = 1, n do x = x + 1 end return x end")
	const goroutines, rounds = 6, 5
	var ok, refused [goroutines]int
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for range rounds {
				res, err := it.Call("work", 20000)
				switch {
				case err == nil:
					if res != int64(20000) {
						t.Errorf("work returned %#v", res)
					}
					ok[g]++
				case errors.Is(err, interpreters.ErrAlreadyRunning):
					refused[g]++
				default:
					t.Errorf("concurrent Call: %v", err)
				}
			}
		}()
	}
	for range goroutines {
		select {
		case <-done:
		case <-time.After(bounded):
			t.Fatal("concurrent calls did not finish")
		}
	}
	total := 0
	for g := range goroutines {
		total += ok[g]
	}
	if total == 0 {
		t.Fatal("no concurrent call succeeded")
	}
	wantEqual(t, "runs (one per successful call, none for refused ones)", global(t, it, "runs"), int64(total))
	wantRunning(t, it, false)
}

// TestConcurrentClose: of several Closes racing, one closes the interpreter
// and the others find it gone.
func TestConcurrentClose(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)
	const n = 4
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			errs <- it.Close()
		}()
	}
	close(start)
	closed := 0
	for range n {
		select {
		case err := <-errs:
			if err == nil {
				closed++
				continue
			}
			wantNotFound(t, "a Close racing another Close", err)
		case <-time.After(bounded):
			t.Fatal("concurrent Close did not return")
		}
	}
	if closed != 1 {
		t.Errorf("%d of %d concurrent Closes reported success, want exactly 1", closed, n)
	}
	waitGone(t, p)
	_, err := rt.Lookup(it.ID())
	wantNotFound(t, "Lookup after concurrent Close", err)
}

// TestCancelKilledWorkerIsGone: Lua stuck in one long Go-side operation (a
// backtracking pattern match) cannot stop when cancelled, so its worker is
// killed; the call still returns the context's error, and from the moment
// it returns the interpreter is gone: not found, not a worker exit.
func TestCancelKilledWorkerIsGone(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	other := create(t, rt)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	p := pid(t, it)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	op := startExec(ctx, it, "s = string.rep('a', 100000) print('matching') while true do string.find(s, '.-.-.-.-.-b') end")
	deadline := time.Now().Add(bounded)
	for !strings.Contains(out.String(), "matching") {
		if op.finished() || time.Now().After(deadline) {
			cancel()
			_, err := op.wait(t)
			t.Fatalf("the match never started (call returned %v)", err)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	_, err := op.wait(t)
	wantErr(t, "the cancelled call", err, context.Canceled)
	var wee *interpreters.WorkerExitError
	if errors.As(err, &wee) {
		t.Errorf("the cancelled call returned *WorkerExitError %q, want the context's error", err)
	}
	if !workerDead(p) {
		// The VM did stop cleanly after all: then it must be usable.
		t.Logf("worker %d survived the cancellation", p)
		mustExec(t, it, "x = 1")
		return
	}
	_, err = rt.Lookup(it.ID())
	wantNotFound(t, "Lookup right after the call whose worker was killed", err)
	if contains(listAll(t, rt), it) {
		t.Error("ListAll still holds the interpreter whose worker was killed")
	}
	_, err = it.IsRunning()
	wantNotFound(t, "IsRunning after the kill", err)
	err = it.Exec("x = 1")
	wantNotFound(t, "Exec after the kill", err)
	if errors.As(err, &wee) {
		t.Errorf("a call made after the killed one reported the earlier kill as its own worker exit: %q", err)
	}
	wantNotFound(t, "Close after the kill", it.Close())
	waitGone(t, p)
	wantEqual(t, "other interpreter", mustCall(t, other, "tostring", 7), "7")
}

// workerDead reports whether the worker process with this pid has ended:
// reaped, a zombie, or its pid reused by a process that is not our child.
func workerDead(pid int) bool {
	ppid, _, state, ok := proctest.Stat(pid)
	return !ok || state == "Z" || ppid != os.Getpid()
}
