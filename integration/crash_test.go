package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

func wantWorkerKilled(t *testing.T, what string, err error, id int64) {
	t.Helper()
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("%s: error %v (%T), want *WorkerExitError", what, err, err)
	}
	wantEqual(t, what+": Signal", wee.Signal, "killed")
	wantEqual(t, what+": ExitCode", wee.ExitCode, -1)
	wantEqual(t, what+": InterpreterID", wee.InterpreterID, id)
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: *WorkerExitError %q should match ErrInterpreter", what, err)
	}
	if wee.Error() == "" {
		t.Errorf("%s: empty error text", what)
	}
}

// TestWorkerKilledDuringCall: a worker that dies under a call fails that
// call with *WorkerExitError; the interpreter is gone, the others carry on.
func TestWorkerKilledDuringCall(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	victim := create(t, rt)
	other := create(t, rt)
	mustExec(t, other, "state = 'kept'")
	p := pid(t, victim)
	otherPid := pid(t, other)

	th := victim.CallInThread("function() while true do end end")
	waitRunning(t, victim, th.Done())
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := waitThread(t, th)
	wantWorkerKilled(t, "the call under the kill", err, victim.ID())

	_, err = victim.IsRunning()
	wantNotFound(t, "IsRunning of the dead interpreter", err)
	wantNotFound(t, "Exec in the dead interpreter", victim.Exec("x = 1"))
	_, err = victim.Call("tostring", 1)
	wantNotFound(t, "Call in the dead interpreter", err)
	wantNotFound(t, "Close of the dead interpreter", victim.Close())
	_, err = rt.Lookup(victim.ID())
	wantNotFound(t, "Lookup of the dead interpreter", err)
	wantList(t, "ListAll after the crash", listAll(t, rt), rt.GetMain(), other)
	waitGone(t, p)

	wantEqual(t, "the other interpreter's state", global(t, other, "state"), "kept")
	if got := pid(t, other); got != otherPid {
		t.Errorf("the other interpreter's pid changed from %d to %d", otherPid, got)
	}
	// The runtime still creates interpreters, with a new ID.
	fresh := create(t, rt)
	if fresh.ID() <= victim.ID() {
		t.Errorf("ID %d after the dead %d: reused", fresh.ID(), victim.ID())
	}
	wantEqual(t, "fresh call", mustCall(t, fresh, "string.upper", "ok"), "OK")
}

// TestWorkerKilledDuringExecContext: the same under ExecContext with a
// context that is never cancelled.
func TestWorkerKilledDuringExecContext(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	victim := create(t, rt)
	p := pid(t, victim)
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	op := startExec(ctx, victim, "while true do end")
	waitRunning(t, victim, op.done)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := op.wait(t)
	wantWorkerKilled(t, "ExecContext under the kill", err, victim.ID())
	_, err = victim.Pid()
	wantNotFound(t, "Pid of the dead interpreter", err)
	waitGone(t, p)
}

// TestWorkerKilledWhileIdle: the next call notices the death, and from
// then on the interpreter is not found.
func TestWorkerKilledWhileIdle(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	victim := create(t, rt)
	other := create(t, rt)
	p := pid(t, victim)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	err := victim.Exec("x = 1")
	switch {
	case errors.Is(err, interpreters.ErrInterpreterNotFound):
	case err != nil && errors.As(err, new(*interpreters.WorkerExitError)):
		wantWorkerKilled(t, "the first call after the kill", err, victim.ID())
	default:
		t.Fatalf("first call after the kill: %v, want ErrInterpreterNotFound or *WorkerExitError", err)
	}
	err = victim.Exec("x = 1")
	wantNotFound(t, "second call after the kill", err)
	// Not found, and why: a caller who was not there learns how it ended.
	if want := fmt.Sprintf("worker process %d was killed", p); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("the second call's error %q does not say %q", err, want)
	}
	_, err = rt.Lookup(victim.ID())
	wantNotFound(t, "Lookup after the kill", err)
	wantList(t, "ListAll after the kill", listAll(t, rt), rt.GetMain(), other)
	waitGone(t, p)
	mustExec(t, other, "y = 2")
}

// TestWorkerKilledNoticedWithoutCall: a dead idle worker drops out of
// Lookup and ListAll on its own.
func TestWorkerKilledNoticedWithoutCall(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	victim := create(t, rt)
	p := pid(t, victim)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	deadline := time.Now().Add(bounded)
	for {
		_, err := rt.Lookup(victim.ID())
		if errors.Is(err, interpreters.ErrInterpreterNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed interpreter is still found after %v", bounded)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain())
	waitGone(t, p)
	_, err := victim.IsRunning()
	wantNotFound(t, "IsRunning", err)
}

// TestWorkerTerminatedDuringCall: another fatal signal, reported by name.
func TestWorkerTerminatedDuringCall(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	victim := create(t, rt)
	p := pid(t, victim)
	th := victim.CallInThread("function() while true do end end")
	waitRunning(t, victim, th.Done())
	if err := syscall.Kill(p, syscall.SIGTERM); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := waitThread(t, th)
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("error %v (%T), want *WorkerExitError", err, err)
	}
	wantEqual(t, "Signal", wee.Signal, "terminated")
	wantEqual(t, "ExitCode", wee.ExitCode, -1)
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%q should match ErrInterpreter", err)
	}
	wantNotFound(t, "Exec after the worker ended", victim.Exec("x = 1"))
	waitGone(t, p)
}
