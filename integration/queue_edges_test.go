package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// TestQueueGetEndedCallTakesNothing: a Lua get whose call has timed out or
// been cancelled takes no item put after that; the item stays in the queue.
func TestQueueGetEndedCallTakesNothing(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := newQueue(t, rt)
	started := newQueue(t, rt)
	timed := create(t, rt, interpreters.WithCallTimeout(50*time.Millisecond))
	cancelled := create(t, rt)
	for i := range 10 {
		th := timed.CallInThread("function(q, started) started:put(true) local v = q:get() local w = {v} return w[1] end", q, started)
		if _, err := started.Get(); err != nil {
			t.Fatal(err)
		}
		// The call began before it said so: this is past its timeout,
		// maybe inside the supervisor's grace.
		time.Sleep(55 * time.Millisecond)
		if err := q.Put(i); err != nil {
			t.Fatal(err)
		}
		if v, err := waitThread(t, th); err == nil {
			t.Errorf("round %d: the timed-out call returned %v", i, v)
		}
		if v, err := q.GetNowait(); err != nil || v != int64(i) {
			t.Fatalf("round %d: the item put after the timeout: %v, %v; want it still queued", i, v, err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		call := start(func() (any, error) { return cancelled.CallContext(ctx, "function(q) return q:get() end", q) })
		waitRunning(t, cancelled, call.done)
		cancel()
		if err := q.Put(i); err != nil {
			t.Fatal(err)
		}
		if _, err := call.wait(t); err == nil {
			t.Errorf("round %d: the cancelled call succeeded", i)
		}
		if v, err := q.GetNowait(); err != nil || v != int64(i) {
			t.Fatalf("round %d: the item put after the cancel: %v, %v; want it still queued", i, v, err)
		}
	}
}

// TestQueueKilledPutterUnbinds: puts from Lua that are still on their way
// when the putter's worker is killed follow its unbound mode like the
// items already in: with UnboundRemove none is left.
func TestQueueKilledPutterUnbinds(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for round := range 5 {
		q, err := rt.CreateQueue(0, interpreters.WithUnboundItems(interpreters.UnboundRemove))
		if err != nil {
			t.Fatal(err)
		}
		victim := create(t, rt)
		p := pid(t, victim)
		th := victim.CallInThread("function(q) local i = 0 while true do i = i + 1 q:put(i) end end", q)
		waitQueueSize(t, q, 1) // puts are under way
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, _ = waitThread(t, th)
		isoWaitNotFound(t, rt, victim)
		if n, err := q.QSize(); err != nil || n != 0 {
			t.Errorf("round %d: %d items of the killed putter left (%v), want none", round, n, err)
		}
	}
}

// TestQueueOrderAfterDeadGetter: an item given back because the getter it
// was handed to had died stays ahead of the items put after it.
func TestQueueOrderAfterDeadGetter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for round := range 10 {
		q := newQueue(t, rt)
		victim, other := create(t, rt), create(t, rt)
		vt := victim.CallInThread("function(q) return q:get() end", q)
		waitRunning(t, victim, vt.Done())
		waitQueueWaiters(t, rt, q, 1) // the victim's get is parked first
		ot := other.CallInThread("function(q) return q:get() end", q)
		waitRunning(t, other, ot.Done())
		waitQueueWaiters(t, rt, q, 2)
		if err := syscall.Kill(pid(t, victim), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(round%3) * time.Millisecond)
		for _, v := range []string{"X", "Z"} {
			if err := q.Put(v); err != nil {
				t.Fatal(err)
			}
		}
		got, err := waitThread(t, ot)
		rest, _ := q.GetNowait()
		// The victim may have taken X before it died; otherwise X comes
		// first, to the other getter.
		if err != nil || (got != "X" && !(got == "Z" && rest == nil)) {
			t.Errorf("round %d: the live getter got %v (%v) with %v left", round, got, err, rest)
		}
		closeAll(t, other)
	}
}
