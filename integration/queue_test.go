package integration

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// The queue tests follow CPython's Lib/test/test_interpreters/test_queues.py,
// with Lua in the interpreters and the Go host as the main interpreter.

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// wantKilledExit checks the error of a call whose worker was SIGKILLed.
func wantKilledExit(t *testing.T, what string, err error, id int64) {
	t.Helper()
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("%s: error %v (%T), want *WorkerExitError", what, err, err)
	}
	if wee.Signal != "killed" || wee.ExitCode != -1 || wee.InterpreterID != id {
		t.Errorf("%s: %+v, want Signal \"killed\", ExitCode -1, InterpreterID %d", what, *wee, id)
	}
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: *WorkerExitError %q should match ErrInterpreter", what, err)
	}
}

// qNew creates a queue in rt or fails the test.
func qNew(t *testing.T, rt *interpreters.Runtime, maxsize int, opts ...interpreters.QueueOption) *interpreters.Queue {
	t.Helper()
	q, err := rt.CreateQueue(maxsize, opts...)
	if err != nil {
		t.Fatalf("CreateQueue(%d): %v", maxsize, err)
	}
	if q == nil {
		t.Fatal("CreateQueue returned a nil *Queue and no error")
	}
	return q
}

func qSize(t *testing.T, q *interpreters.Queue) int {
	t.Helper()
	n, err := q.QSize()
	if err != nil {
		t.Fatalf("%v.QSize: %v", q, err)
	}
	return n
}

func qEmpty(t *testing.T, q *interpreters.Queue) bool {
	t.Helper()
	e, err := q.Empty()
	if err != nil {
		t.Fatalf("%v.Empty: %v", q, err)
	}
	return e
}

func qFull(t *testing.T, q *interpreters.Queue) bool {
	t.Helper()
	f, err := q.Full()
	if err != nil {
		t.Fatalf("%v.Full: %v", q, err)
	}
	return f
}

func qPut(t *testing.T, q *interpreters.Queue, v any, opts ...interpreters.PutOption) {
	t.Helper()
	if err := q.Put(v, opts...); err != nil {
		t.Fatalf("%v.Put(%#v): %v", q, v, err)
	}
}

// qGet is Get bounded by bounded, so a test never hangs on an empty queue.
func qGet(t *testing.T, q *interpreters.Queue) any {
	t.Helper()
	ctx, cancel := contextWithTimeout(bounded)
	defer cancel()
	v, err := q.GetContext(ctx)
	if err != nil {
		t.Fatalf("%v.Get: %v", q, err)
	}
	return v
}

// wantQueueErr checks a queue error: it matches target and, as in
// CPython's class tree (QueueError is a RuntimeError), not ErrInterpreter.
func wantQueueErr(t *testing.T, what string, err, target error) {
	t.Helper()
	wantErr(t, what, err, target)
	if err != nil && errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: queue error %q should not match ErrInterpreter", what, err)
	}
}

func wantSize(t *testing.T, what string, q *interpreters.Queue, want int) {
	t.Helper()
	if got := qSize(t, q); got != want {
		t.Errorf("%s: QSize = %d, want %d", what, got, want)
	}
}

// TestQueueCreate: maxsize is kept as given; <= 0 is unbounded.
func TestQueueCreate(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var prev int64
	for _, maxsize := range []int{0, 3, 100, -1, -10} {
		q := qNew(t, rt, maxsize)
		wantEqual(t, fmt.Sprintf("CreateQueue(%d).MaxSize()", maxsize), q.MaxSize(), maxsize)
		if q.ID() <= prev {
			t.Errorf("queue IDs should increase from 1: got %d after %d", q.ID(), prev)
		}
		prev = q.ID()
		wantEqual(t, "String", q.String(), fmt.Sprintf("Queue(%d)", q.ID()))
		wantSize(t, "a new queue", q, 0)
	}
	// An unbounded queue takes many items without blocking.
	for _, maxsize := range []int{0, -10} {
		q := qNew(t, rt, maxsize)
		for i := range 50 {
			if err := q.PutNowait(i); err != nil {
				t.Fatalf("CreateQueue(%d): PutNowait #%d: %v", maxsize, i, err)
			}
		}
		if qFull(t, q) {
			t.Errorf("CreateQueue(%d) with 50 items reports Full", maxsize)
		}
	}
	_, err := rt.CreateQueue(0, interpreters.WithUnboundItems(interpreters.UnboundMode(99)))
	wantInvalid(t, "CreateQueue with an unknown unbound mode", err)
}

// TestQueueLookup: LookupQueue returns the one *Queue of an ID; unknown
// IDs are not found.
func TestQueueLookup(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 7)
	got, err := rt.LookupQueue(q.ID())
	if err != nil {
		t.Fatalf("LookupQueue(%d): %v", q.ID(), err)
	}
	if got != q {
		t.Errorf("LookupQueue(%d) = %p, want the same *Queue %p", q.ID(), got, q)
	}
	wantEqual(t, "MaxSize of the looked-up queue", got.MaxSize(), 7)
	_, err = rt.LookupQueue(1_000_000)
	wantQueueErr(t, "LookupQueue(1_000_000)", err, interpreters.ErrQueueNotFound)
	_, err = rt.LookupQueue(-1)
	wantInvalid(t, "LookupQueue(-1)", err)

	other := newRuntime(t)
	if _, err := other.LookupQueue(q.ID()); !errors.Is(err, interpreters.ErrQueueNotFound) {
		t.Errorf("another runtime's LookupQueue(%d): %v, want ErrQueueNotFound (queues belong to their runtime)", q.ID(), err)
	}
}

// TestQueueSamePointerEverywhere: a queue that travels (PrepareMain, Call
// arguments and results, nested in values, through other queues) comes
// back as the very same *Queue (test_shareable).
func TestQueueSamePointerEverywhere(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q := qNew(t, rt, 0)
	carrier := qNew(t, rt, 0)

	if err := it.PrepareMain(map[string]any{"q": q, "pair": interpreters.Tuple{q, "x"}}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	if got := mustCall(t, it, "function() return q end"); got != q {
		t.Errorf("the queue bound by PrepareMain came back as %#v, want the same *Queue", got)
	}
	if got := mustCall(t, it, "function() return pair[1] end"); got != q {
		t.Errorf("the queue bound in a Tuple came back as %#v, want the same *Queue", got)
	}
	wantEqual(t, "the bound queue's id seen in Lua", mustCall(t, it, "function() return q.id end"), q.ID())
	if got := mustCall(t, it, "function(x) return x end", q); got != q {
		t.Errorf("a queue passed as a Call argument came back as %#v", got)
	}
	res := mustCall(t, it, "function(x) return {x, {inner = x}}, x end", q)
	tu, ok := res.(interpreters.Tuple)
	if !ok || len(tu) != 2 {
		t.Fatalf("result %#v, want a Tuple of 2", res)
	}
	list, ok := tu[0].([]any)
	if !ok || len(list) != 2 || list[0] != q {
		t.Errorf("a queue nested in a list came back as %#v", tu[0])
	} else if m, ok := list[1].(map[string]any); !ok || m["inner"] != q {
		t.Errorf("a queue nested in a map came back as %#v", list[1])
	}
	if tu[1] != q {
		t.Errorf("a queue as the second result came back as %#v", tu[1])
	}
	// Lua sees one handle per queue too.
	wantEqual(t, "rawequal in Lua", mustCall(t, it, `function(x)
		return rawequal(x, q) and rawequal(require("interpreters").Queue(q.id), q)
	end`, q), true)

	// Same interpreter: a queue put in a queue by the host comes out as itself.
	qPut(t, carrier, q)
	if got := qGet(t, carrier); got != q {
		t.Errorf("a queue put by the host in another queue came back as %#v", got)
	}
	qPut(t, carrier, []any{map[string]any{"q": q}})
	got := qGet(t, carrier)
	if l, ok := got.([]any); !ok || len(l) != 1 || l[0].(map[string]any)["q"] != q {
		t.Errorf("a queue nested in a queue item came back as %#v", got)
	}
	// From an interpreter: a queue it puts comes out as the host's pointer.
	mustCall(t, it, "function(c) c:put(q) end", carrier)
	if got := qGet(t, carrier); got != q {
		t.Errorf("a queue put by an interpreter came back as %#v", got)
	}
	// The host puts a queue, the interpreter gets it (from the current
	// interpreter, in CPython's words).
	q4 := qNew(t, rt, 0)
	qPut(t, carrier, q4)
	wantEqual(t, "the id of the queue the interpreter got", mustCall(t, it, "function(c) return c:get().id end", carrier), q4.ID())
	// A queue created in the interpreter and put (from the subinterpreter).
	id := mustCall(t, it, `function(c)
		local q5 = require("interpreters").create_queue()
		c:put(q5)
		return q5.id
	end`, carrier)
	got = qGet(t, carrier)
	q5, ok := got.(*interpreters.Queue)
	if !ok {
		t.Fatalf("the queue created in Lua came out as %#v, want a *Queue", got)
	}
	wantEqual(t, "its ID", q5.ID(), id)
	if l, err := rt.LookupQueue(q5.ID()); err != nil || l != q5 {
		t.Errorf("LookupQueue(%d) = %p, %v; want the same *Queue %p", q5.ID(), l, err, q5)
	}
}

// TestQueueEmpty follows test_empty.
func TestQueueEmpty(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	before := qEmpty(t, q)
	qPut(t, q, nil)
	during := qEmpty(t, q)
	qGet(t, q)
	after := qEmpty(t, q)
	wantEqual(t, "empty before, during, after", []bool{before, during, after}, []bool{true, false, true})
}

// TestQueueFull follows test_full: bounded queues are full at maxsize,
// unbounded ones never.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for _, maxsize := range []int{1, 3, 11} {
		t.Run(fmt.Sprintf("maxsize=%d", maxsize), func(t *testing.T) {
			want := make([]bool, maxsize*2+3)
			want[maxsize] = true
			want[maxsize+1] = true
			q := qNew(t, rt, maxsize)
			var got []bool
			empty := []bool{qEmpty(t, q)}
			for range maxsize {
				got = append(got, qFull(t, q))
				if err := q.PutNowait(nil); err != nil {
					t.Fatalf("PutNowait: %v", err)
				}
			}
			got = append(got, qFull(t, q))
			wantQueueErr(t, "PutNowait on a full queue", q.PutNowait(nil), interpreters.ErrQueueFull)
			empty = append(empty, qEmpty(t, q))
			for range maxsize {
				got = append(got, qFull(t, q))
				if _, err := q.GetNowait(); err != nil {
					t.Fatalf("GetNowait: %v", err)
				}
			}
			got = append(got, qFull(t, q))
			_, err := q.GetNowait()
			wantQueueErr(t, "GetNowait on an empty queue", err, interpreters.ErrQueueEmpty)
			got = append(got, qFull(t, q))
			empty = append(empty, qEmpty(t, q))
			wantEqual(t, "Full sequence", got, want)
			wantEqual(t, "Empty sequence", empty, []bool{true, false, true})
		})
	}
	for _, maxsize := range []int{0, -1, -10} {
		t.Run(fmt.Sprintf("unbounded=%d", maxsize), func(t *testing.T) {
			const n = 13
			want := make([]bool, n*2+3)
			q := qNew(t, rt, maxsize)
			var got []bool
			empty := []bool{qEmpty(t, q)}
			for range n {
				got = append(got, qFull(t, q))
				if err := q.PutNowait(nil); err != nil {
					t.Fatalf("PutNowait: %v", err)
				}
			}
			got = append(got, qFull(t, q))
			empty = append(empty, qEmpty(t, q))
			for range n {
				got = append(got, qFull(t, q))
				if _, err := q.GetNowait(); err != nil {
					t.Fatalf("GetNowait: %v", err)
				}
			}
			got = append(got, qFull(t, q))
			_, err := q.GetNowait()
			wantQueueErr(t, "GetNowait on an empty queue", err, interpreters.ErrQueueEmpty)
			got = append(got, qFull(t, q))
			empty = append(empty, qEmpty(t, q))
			wantEqual(t, "Full sequence", got, want)
			wantEqual(t, "Empty sequence", empty, []bool{true, false, true})
		})
	}
}

// TestQueueQSize follows test_qsize.
func TestQueueQSize(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	var got []int
	for range 3 {
		got = append(got, qSize(t, q))
		qPut(t, q, nil)
	}
	got = append(got, qSize(t, q))
	qGet(t, q)
	got = append(got, qSize(t, q))
	qPut(t, q, nil)
	got = append(got, qSize(t, q))
	for range 3 {
		qGet(t, q)
		got = append(got, qSize(t, q))
	}
	qPut(t, q, nil)
	got = append(got, qSize(t, q))
	qGet(t, q)
	got = append(got, qSize(t, q))
	wantEqual(t, "QSize sequence", got, []int{0, 1, 2, 3, 2, 3, 2, 1, 0, 1, 0})
}

// TestQueueFIFO follows test_put_get_main and test_put_get_full_fallback:
// items come out in the order they went in, with Get and with GetNowait.
func TestQueueFIFO(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	for _, get := range []struct {
		name string
		f    func() (any, error)
	}{{"Get", q.Get}, {"GetNowait", q.GetNowait}} {
		want := make([]any, 20)
		for i := range 20 {
			qPut(t, q, i)
			want[i] = int64(i)
		}
		got := make([]any, 20)
		for i := range 20 {
			v, err := get.f()
			if err != nil {
				t.Fatalf("%s #%d: %v", get.name, i, err)
			}
			got[i] = v
		}
		wantEqual(t, get.name+" order", got, want)
	}
}

// TestQueuePutTimeout follows test_put_timeout: PutContext on a full queue
// fails with ErrQueueFull when its context ends.
func TestQueuePutTimeout(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 2)
	qPut(t, q, nil)
	qPut(t, q, nil)
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	began := time.Now()
	err := q.PutContext(ctx, nil)
	wantQueueErr(t, "PutContext on a full queue", err, interpreters.ErrQueueFull)
	if d := time.Since(began); d < 90*time.Millisecond {
		t.Errorf("PutContext gave up after %v, before its context ended", d)
	}
	wantSize(t, "after the timed-out put", q, 2)
	qGet(t, q)
	qPut(t, q, nil)
	wantSize(t, "after a get and a put", q, 2)

	// A context already ended: one try, no waiting.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	wantQueueErr(t, "PutContext with a cancelled context on a full queue", q.PutContext(done, 1), interpreters.ErrQueueFull)
}

// TestQueuePutNowait follows test_put_nowait.
func TestQueuePutNowait(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 2)
	for i := range 2 {
		if err := q.PutNowait(i); err != nil {
			t.Fatalf("PutNowait #%d: %v", i, err)
		}
	}
	wantQueueErr(t, "PutNowait on a full queue", q.PutNowait(2), interpreters.ErrQueueFull)
	wantEqual(t, "first item", qGet(t, q), int64(0))
	if err := q.PutNowait(3); err != nil {
		t.Fatalf("PutNowait after a get: %v", err)
	}
	wantEqual(t, "second item", qGet(t, q), int64(1))
	wantEqual(t, "third item (the refused one never went in)", qGet(t, q), int64(3))
}

// TestQueueGetTimeout follows test_get_timeout and test_get_nowait.
func TestQueueGetTimeout(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	ctx, cancel := contextWithTimeout(100 * time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := q.GetContext(ctx)
	wantQueueErr(t, "GetContext on an empty queue", err, interpreters.ErrQueueEmpty)
	if d := time.Since(began); d < 90*time.Millisecond {
		t.Errorf("GetContext gave up after %v, before its context ended", d)
	}
	_, err = q.GetNowait()
	wantQueueErr(t, "GetNowait on an empty queue", err, interpreters.ErrQueueEmpty)
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	_, err = q.GetContext(done)
	wantQueueErr(t, "GetContext with a cancelled context on an empty queue", err, interpreters.ErrQueueEmpty)
}

// TestQueueBlockedGetWakes: a Get waiting on an empty queue returns the
// item as soon as one arrives, from the host or from an interpreter.
func TestQueueBlockedGetWakes(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q := qNew(t, rt, 0)
	for _, from := range []string{"host", "interpreter"} {
		t.Run(from, func(t *testing.T) {
			op := start(func() (any, error) {
				ctx, cancel := contextWithTimeout(bounded)
				defer cancel()
				return q.GetContext(ctx)
			})
			waitQueueWaiters(t, rt, q, 1)
			if op.finished() {
				t.Fatalf("Get on an empty queue returned at once: %#v, %v", op.res, op.err)
			}
			if from == "host" {
				qPut(t, q, "wake")
			} else {
				mustCall(t, it, `function(q) q:put("wake") end`, q)
			}
			v, err := op.wait(t)
			if err != nil {
				t.Fatalf("the blocked Get: %v", err)
			}
			wantEqual(t, "the blocked Get's item", v, "wake")
		})
	}
}

// TestQueueBlockedPutWakes: a Put waiting on a full queue goes in as soon
// as an interpreter takes an item.
func TestQueueBlockedPutWakes(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q := qNew(t, rt, 1)
	qPut(t, q, "first")
	op := start(func() (any, error) {
		ctx, cancel := contextWithTimeout(bounded)
		defer cancel()
		return nil, q.PutContext(ctx, "second")
	})
	waitQueueWaiters(t, rt, q, 1)
	if op.finished() {
		t.Fatalf("Put on a full queue returned at once: %v", op.err)
	}
	wantEqual(t, "the interpreter's get", mustCall(t, it, "function(q) return q:get() end", q), "first")
	if _, err := op.wait(t); err != nil {
		t.Fatalf("the blocked Put: %v", err)
	}
	wantEqual(t, "the item the blocked Put put", qGet(t, q), "second")
}

// TestQueuePutGetDifferentGoroutines follows test_put_get_different_threads.
func TestQueuePutGetDifferentGoroutines(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q1 := qNew(t, rt, 0)
	q2 := qNew(t, rt, 0)
	done := make(chan error, 1)
	go func() {
		for {
			ctx, cancel := contextWithTimeout(100 * time.Millisecond)
			v, err := q1.GetContext(ctx)
			cancel()
			if errors.Is(err, interpreters.ErrQueueEmpty) {
				continue
			}
			if err != nil {
				done <- err
				return
			}
			done <- q2.Put(v)
			return
		}
	}()
	orig := []byte("spam")
	qPut(t, q1, orig)
	v := qGet(t, q2)
	if err := <-done; err != nil {
		t.Fatalf("the other goroutine: %v", err)
	}
	wantEqual(t, "the item through two queues", v, "spam")
}

// TestQueueItemsNormalised follows test_put_full_fallback: items are
// copies in the fallback tier, and come out in the normalised Go form even
// when the host put them.
func TestQueueItemsNormalised(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	type myBytes []byte
	type myInt int16
	cases := []struct {
		in, want any
	}{
		{nil, nil},
		{true, true},
		{false, false},
		{10, int64(10)},
		{-10, int64(-10)},
		{int8(-3), int64(-3)},
		{uint16(65535), int64(65535)},
		{myInt(7), int64(7)},
		{int64(1<<53 - 1), int64(1<<53 - 1)},
		{-(int64(1<<53 - 1)), -(int64(1<<53 - 1))},
		{3.0, int64(3)},
		{-0.5, -0.5},
		{float32(1.5), 1.5},
		{"spam", "spam"},
		{"", ""},
		{[]byte("spam"), "spam"},
		{myBytes("eggs"), "eggs"},
		{interpreters.Tuple{0, "a"}, []any{int64(0), "a"}},
		{interpreters.Tuple{}, []any{}},
		{[]any{1, 2, 3}, []any{int64(1), int64(2), int64(3)}},
		{[]int{4, 5}, []any{int64(4), int64(5)}},
		{[]string{}, []any{}},
		{map[string]any{"a": 13, "b": 17.0}, map[string]any{"a": int64(13), "b": int64(17)}},
		{map[string]int{"x": 1}, map[string]any{"x": int64(1)}},
		{map[string]any{"nested": []any{interpreters.Tuple{true}, map[string]any{"f": 2.25}}},
			map[string]any{"nested": []any{[]any{true}, map[string]any{"f": 2.25}}}},
	}
	q := qNew(t, rt, 0)
	for _, c := range cases {
		qPut(t, q, c.in)
		v := qGet(t, q)
		wantEqual(t, fmt.Sprintf("Put(%#v) then Get", c.in), v, c.want)
		if err := q.PutNowait(c.in); err != nil {
			t.Fatalf("PutNowait(%#v): %v", c.in, err)
		}
		v, err := q.GetNowait()
		if err != nil {
			t.Fatalf("GetNowait: %v", err)
		}
		wantEqual(t, fmt.Sprintf("PutNowait(%#v) then GetNowait", c.in), v, c.want)
	}

	// A copy: changing what was put does not change the item.
	list := []any{1, 2, 3}
	m := map[string]any{"k": "v"}
	qPut(t, q, []any{list, m})
	list[0] = "changed"
	m["k"] = "changed"
	wantEqual(t, "an item after its source changed", qGet(t, q), []any{[]any{int64(1), int64(2), int64(3)}, map[string]any{"k": "v"}})
	// Two gets of the same value are distinct copies.
	qPut(t, q, []any{1})
	qPut(t, q, []any{1})
	a, b := qGet(t, q).([]any), qGet(t, q).([]any)
	a[0] = "changed"
	wantEqual(t, "the second copy", b, []any{int64(1)})
}

// TestQueueItemsFromLuaNormalised: items put by Lua come out in the
// documented Go form.
func TestQueueItemsFromLuaNormalised(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q := qNew(t, rt, 0)
	mustCall(t, it, `function(q)
		q:put(nil)
		q:put(true)
		q:put(42)
		q:put(2^53 - 1)
		q:put(2^53)
		q:put(0.25)
		q:put("s\0t")
		q:put({1, "two", {3}})
		q:put({k = "v", n = 1.5})
		q:put({})
	end`, q)
	want := []any{
		nil, true, int64(42), int64(1<<53 - 1), float64(1 << 53), 0.25, "s\x00t",
		[]any{int64(1), "two", []any{int64(3)}},
		map[string]any{"k": "v", "n": 1.5},
		[]any{},
	}
	for i, w := range want {
		wantEqual(t, fmt.Sprintf("item %d", i), qGet(t, q), w)
	}
}

// TestQueueNotShareable: what the fallback tier cannot carry is refused
// with ErrNotShareable and never enters the queue, from the host and from
// Lua.
func TestQueueNotShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q := qNew(t, rt, 0)
	type point struct{ X, Y int }
	cyclic := []any{nil}
	cyclic[0] = cyclic
	for _, v := range []any{
		func() {},
		make(chan int),
		point{1, 2},
		&point{1, 2},
		map[int]string{1: "x"},
		int64(1 << 53),
		uint64(1 << 63),
		[]any{1, func() {}},
		map[string]any{"ok": 1, "bad": make(chan int)},
		cyclic,
	} {
		wantNotShareable(t, fmt.Sprintf("Put(%T)", v), q.Put(v))
		wantNotShareable(t, fmt.Sprintf("PutNowait(%T)", v), q.PutNowait(v))
	}
	wantSize(t, "after the refused puts", q, 0)

	res := mustCall(t, it, `function(q)
		local out = {}
		local cyc = {}
		cyc.self = cyc
		for _, v in ipairs({
			function() end,
			coroutine.create(function() end),
			setmetatable({}, {}),
			cyc,
			{[true] = 1},
			{1, 2, x = 3},
			{[1.5] = 1},
		}) do
			local ok, e = pcall(q.put, q, v)
			out[#out + 1] = ok and "ok" or e.type
		end
		return out
	end`, q)
	l, ok := res.([]any)
	if !ok || len(l) != 7 {
		t.Fatalf("result %#v, want 7 error types", res)
	}
	for i, typ := range l {
		if typ != "NotShareableError" {
			t.Errorf("Lua put of unshareable value #%d: %v, want NotShareableError", i+1, typ)
		}
	}
	wantSize(t, "after the refused Lua puts", q, 0)
}

// TestQueuePutGetDifferentInterpreters follows
// test_put_get_different_interpreters.
func TestQueuePutGetDifferentInterpreters(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	q1 := qNew(t, rt, 0)
	q2 := qNew(t, rt, 0)
	if err := it.PrepareMain(map[string]any{"queue1": q1, "queue2": q2}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	for _, meth := range []string{"get", "get_nowait"} {
		t.Run(meth, func(t *testing.T) {
			qPut(t, q1, []byte("spam"))
			mustExec(t, it, fmt.Sprintf(`
				assert(queue1:qsize() == 1, "expected: queue1:qsize() == 1")
				local obj = queue1:%s()
				assert(queue1:qsize() == 0, "expected: queue1:qsize() == 0")
				assert(obj == "spam", "expected: obj == 'spam', got " .. tostring(obj))
				assert(queue2:qsize() == 0, "expected: queue2:qsize() == 0")
				queue2:put("eggs")
				assert(queue2:qsize() == 1, "expected: queue2:qsize() == 1")
			`, meth))
			wantSize(t, "queue1", q1, 0)
			wantSize(t, "queue2", q2, 1)
			var v any
			var err error
			if meth == "get" {
				v = qGet(t, q2)
			} else if v, err = q2.GetNowait(); err != nil {
				t.Fatalf("GetNowait: %v", err)
			}
			wantEqual(t, "what the interpreter put", v, "eggs")
		})
	}
}

// TestQueuePutGetSameInterpreter follows test_put_get_same_interpreter:
// an interpreter gets back a copy of what it put.
func TestQueuePutGetSameInterpreter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, `queue = require("interpreters").create_queue()`)
	for _, meth := range []string{"get", "get_nowait"} {
		mustExec(t, it, fmt.Sprintf(`
			local orig = {"spam", {1, 2}, k = nil}
			queue:put(orig)
			local obj = queue:%s()
			assert(obj ~= orig, "expected: a copy, not the table itself")
			assert(obj[1] == "spam" and obj[2][1] == 1 and obj[2][2] == 2, "expected: an equal table")
			assert(obj[2] ~= orig[2], "expected: a deep copy")
			queue:put("spam")
			assert(queue:%s() == "spam")
		`, meth, meth))
	}
}

// putClearedCommon is common() of test_put_cleared_with_subinterpreter: a
// new interpreter puts obj1 and obj2 (with the given unbounditems, none
// when "") and, with presize 0, the host takes obj1 back.
func putClearedCommon(t *testing.T, rt *interpreters.Runtime, q *interpreters.Queue, opt string, presize int) *interpreters.Interpreter {
	t.Helper()
	it := create(t, rt)
	extra := ""
	if opt != "" {
		extra = `, {unbounditems = interpreters.` + opt + `}`
	}
	mustCall(t, it, `function(q)
		interpreters = require("interpreters")
		queue = q
		queue:put("spam"`+extra+`)
		queue:put("eggs"`+extra+`)
	end`, q)
	wantSize(t, "after the interpreter's two puts", q, presize+2)
	if presize == 0 {
		wantEqual(t, "obj1", qGet(t, q), "spam")
		wantSize(t, "after taking obj1", q, presize+1)
	}
	return it
}

func wantUnbound(t *testing.T, what string, q *interpreters.Queue) {
	t.Helper()
	v, err := q.GetNowait()
	if err != nil {
		t.Errorf("%s: Get: %v, want interpreters.Unbound", what, err)
		return
	}
	if v != interpreters.Unbound {
		t.Errorf("%s: Get = %#v, want interpreters.Unbound", what, v)
	}
}

func wantDestroyedItem(t *testing.T, what string, q *interpreters.Queue) {
	t.Helper()
	v, err := q.GetNowait()
	if err == nil {
		t.Errorf("%s: Get = %#v, want ErrItemInterpreterDestroyed", what, v)
		return
	}
	wantQueueErr(t, what, err, interpreters.ErrItemInterpreterDestroyed)
}

func wantGetEmpty(t *testing.T, what string, q *interpreters.Queue) {
	t.Helper()
	v, err := q.GetNowait()
	if err == nil {
		t.Errorf("%s: GetNowait = %#v, want ErrQueueEmpty", what, v)
		return
	}
	wantQueueErr(t, what, err, interpreters.ErrQueueEmpty)
}

func closeInterp(t *testing.T, it *interpreters.Interpreter) {
	t.Helper()
	if err := it.Close(); err != nil {
		t.Fatalf("Close %v: %v", it, err)
	}
}

// TestQueuePutClearedWithSubinterpreter follows
// test_put_cleared_with_subinterpreter.
func TestQueuePutClearedWithSubinterpreter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	t.Run("default", func(t *testing.T) {
		q := qNew(t, rt, 0)
		it := putClearedCommon(t, rt, q, "", 0)
		closeInterp(t, it)
		wantUnbound(t, "obj2 after close", q)
		wantSize(t, "after the get", q, 0)
		wantGetEmpty(t, "then", q)
	})
	t.Run("UNBOUND", func(t *testing.T) {
		q := qNew(t, rt, 0)
		it := putClearedCommon(t, rt, q, "UNBOUND", 0)
		closeInterp(t, it)
		wantUnbound(t, "obj2 after close", q)
		wantSize(t, "after the get", q, 0)
		wantGetEmpty(t, "then", q)
	})
	t.Run("UNBOUND_ERROR", func(t *testing.T) {
		q := qNew(t, rt, 0)
		it := putClearedCommon(t, rt, q, "UNBOUND_ERROR", 0)
		closeInterp(t, it)
		wantSize(t, "after close", q, 1)
		wantDestroyedItem(t, "obj2 after close", q)
		wantSize(t, "after the failed get (the item is consumed)", q, 0)
		wantGetEmpty(t, "then", q)
	})
	t.Run("UNBOUND_REMOVE", func(t *testing.T) {
		q := qNew(t, rt, 0)
		it := putClearedCommon(t, rt, q, "UNBOUND_REMOVE", 0)
		closeInterp(t, it)
		wantSize(t, "after close", q, 0)
		wantGetEmpty(t, "after close", q)

		qPut(t, q, []byte("ham"), interpreters.WithUnboundItems(interpreters.UnboundRemove))
		wantSize(t, "after the host's put", q, 1)
		it = putClearedCommon(t, rt, q, "UNBOUND_REMOVE", 1)
		wantSize(t, "after the second interpreter's puts", q, 3)
		qPut(t, q, 42, interpreters.WithUnboundItems(interpreters.UnboundRemove))
		wantSize(t, "after the host's second put", q, 4)
		closeInterp(t, it)
		wantSize(t, "after closing the second interpreter", q, 2)
		wantEqual(t, "obj1", qGet(t, q), "ham")
		wantEqual(t, "obj2", qGet(t, q), int64(42))
		wantSize(t, "at the end", q, 0)
		wantGetEmpty(t, "at the end", q)
	})
}

// TestQueuePutClearedMixed follows test_put_cleared_with_subinterpreter_mixed.
func TestQueuePutClearedMixed(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	it := create(t, rt)
	mustCall(t, it, `function(queue)
		local interpreters = require("interpreters")
		queue:put(1, {unbounditems = interpreters.UNBOUND})
		queue:put(2, {unbounditems = interpreters.UNBOUND_ERROR})
		queue:put(3)
		queue:put(4, {unbounditems = interpreters.UNBOUND_REMOVE})
		queue:put(5, {unbounditems = interpreters.UNBOUND})
	end`, q)
	wantSize(t, "after the puts", q, 5)
	closeInterp(t, it)
	wantSize(t, "after close", q, 4)
	wantUnbound(t, "obj1", q)
	wantSize(t, "after obj1", q, 3)
	wantDestroyedItem(t, "obj2", q)
	wantSize(t, "after obj2", q, 2)
	wantUnbound(t, "obj3", q)
	wantSize(t, "after obj3", q, 1)
	wantUnbound(t, "obj5", q)
	wantSize(t, "after obj5", q, 0)
}

// TestQueuePutClearedMultiple follows
// test_put_cleared_with_subinterpreter_multiple.
func TestQueuePutClearedMultiple(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	interp1 := create(t, rt)
	interp2 := create(t, rt)
	if err := interp1.PrepareMain(map[string]any{"queue": q}); err != nil {
		t.Fatal(err)
	}
	if err := interp2.PrepareMain(map[string]any{"queue": q}); err != nil {
		t.Fatal(err)
	}
	prelude := `interpreters = require("interpreters")
		U, E, R = {unbounditems = interpreters.UNBOUND}, {unbounditems = interpreters.UNBOUND_ERROR}, {unbounditems = interpreters.UNBOUND_REMOVE}
	`
	qPut(t, q, 1)
	mustExec(t, interp1, prelude+`
		obj1 = queue:get()
		queue:put(2, U)
		queue:put(obj1, R)
	`)
	mustExec(t, interp2, prelude+`
		obj2 = queue:get()
		obj1 = queue:get()
	`)
	wantSize(t, "after the first round", q, 0)
	qPut(t, q, 3)
	mustExec(t, interp1, `
		queue:put(4, U)
		queue:put(5, R)
		queue:put(6, U)
	`)
	mustExec(t, interp2, `
		queue:put(7, E)
		queue:put(obj1, E)
		queue:put(obj2, R)
		queue:put(8, U)
	`)
	mustExec(t, interp1, `
		queue:put(9, R)
		queue:put(10, U)
	`)
	wantSize(t, "after every put", q, 10)
	wantEqual(t, "obj3", qGet(t, q), int64(3))
	wantSize(t, "after obj3", q, 9)
	wantEqual(t, "obj4", qGet(t, q), int64(4))
	wantSize(t, "after obj4", q, 8)

	closeInterp(t, interp1)
	wantSize(t, "after closing interp1 (obj5 and obj9 removed)", q, 6)
	wantUnbound(t, "obj6", q)
	wantSize(t, "after obj6", q, 5)
	wantEqual(t, "obj7 (interp2 still lives)", qGet(t, q), int64(7))
	wantSize(t, "after obj7", q, 4)

	closeInterp(t, interp2)
	wantSize(t, "after closing interp2 (obj2 removed)", q, 3)
	wantDestroyedItem(t, "obj1", q)
	wantSize(t, "after obj1", q, 2)
	wantUnbound(t, "obj8", q)
	wantSize(t, "after obj8", q, 1)
	wantUnbound(t, "obj10", q)
	wantSize(t, "at the end", q, 0)
}

// TestQueueUnboundDefaults: CreateQueue(WithUnboundItems(m)) sets the mode
// of items put without one; a put's own mode wins; the host's own items
// are never unbound.
func TestQueueUnboundDefaults(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for _, c := range []struct {
		name string
		mode interpreters.UnboundMode
	}{
		{"replace", interpreters.UnboundReplace},
		{"error", interpreters.UnboundError},
		{"remove", interpreters.UnboundRemove},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := qNew(t, rt, 0, interpreters.WithUnboundItems(c.mode))
			it := create(t, rt)
			qPut(t, q, "host-default")
			qPut(t, q, "host-remove", interpreters.WithUnboundItems(interpreters.UnboundRemove))
			if err := q.PutNowait("host-error", interpreters.WithUnboundItems(interpreters.UnboundError)); err != nil {
				t.Fatalf("PutNowait with a mode: %v", err)
			}
			ctx, cancel := contextWithTimeout(bounded)
			defer cancel()
			if err := q.PutContext(ctx, "host-replace", interpreters.WithUnboundItems(interpreters.UnboundReplace)); err != nil {
				t.Fatalf("PutContext with a mode: %v", err)
			}
			mustCall(t, it, `function(q)
				local interpreters = require("interpreters")
				q:put("lua-default")
				q:put("lua-replace", {unbounditems = interpreters.UNBOUND})
				q:put_nowait("lua-error", {unbounditems = interpreters.UNBOUND_ERROR})
				q:put("lua-remove", {unbounditems = interpreters.UNBOUND_REMOVE, timeout = 1})
				q:put("lua-last")
			end`, q)
			wantSize(t, "before close", q, 9)
			closeInterp(t, it)
			for _, h := range []string{"host-default", "host-remove", "host-error", "host-replace"} {
				wantEqual(t, "the host's item", qGet(t, q), h)
			}
			// lua-default, as the queue's default says.
			switch c.mode {
			case interpreters.UnboundReplace:
				wantUnbound(t, "lua-default", q)
			case interpreters.UnboundError:
				wantDestroyedItem(t, "lua-default", q)
			}
			wantUnbound(t, "lua-replace", q)
			wantDestroyedItem(t, "lua-error", q)
			// lua-remove is gone whatever the default.
			switch c.mode {
			case interpreters.UnboundReplace:
				wantUnbound(t, "lua-last", q)
			case interpreters.UnboundError:
				wantDestroyedItem(t, "lua-last", q)
			}
			wantGetEmpty(t, "at the end", q)
		})
	}
	q := qNew(t, rt, 0)
	wantInvalid(t, "Put with an unknown unbound mode", q.Put(1, interpreters.WithUnboundItems(interpreters.UnboundMode(42))))
	wantSize(t, "after the refused put", q, 0)
}

// TestQueueUnboundOnKill: an interpreter whose worker is SIGKILLed unbinds
// its items exactly as one that is closed, in every mode.
func TestQueueUnboundOnKill(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0, interpreters.WithUnboundItems(interpreters.UnboundError))
	victim := create(t, rt)
	other := create(t, rt)
	qPut(t, q, "host-1")
	mustCall(t, victim, `function(q)
		local interpreters = require("interpreters")
		q:put("v-default")
		q:put("v-replace", {unbounditems = interpreters.UNBOUND})
		q:put("v-remove", {unbounditems = interpreters.UNBOUND_REMOVE})
		q:put("v-error", {unbounditems = interpreters.UNBOUND_ERROR})
	end`, q)
	mustCall(t, other, `function(q) q:put("other-1", {unbounditems = require("interpreters").UNBOUND_REMOVE}) end`, q)
	mustCall(t, victim, `function(q) q:put("v-remove-2", {unbounditems = require("interpreters").UNBOUND_REMOVE}) end`, q)
	qPut(t, q, "host-2")
	wantSize(t, "before the kill", q, 8)

	// Kill it under a call, so the call's *WorkerExitError says the end
	// has been dealt with.
	p := pid(t, victim)
	th := victim.CallInThread("function() while true do end end")
	waitRunning(t, victim, th.Done())
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := waitThread(t, th)
	wantKilledExit(t, "the call under the kill", err, victim.ID())
	_, err = rt.Lookup(victim.ID())
	wantNotFound(t, "Lookup of the killed interpreter", err)

	wantSize(t, "after the kill (both UNBOUND_REMOVE items dropped)", q, 6)
	wantEqual(t, "host-1", qGet(t, q), "host-1")
	wantDestroyedItem(t, "v-default (the queue's default is UnboundError)", q)
	wantUnbound(t, "v-replace", q)
	wantDestroyedItem(t, "v-error", q)
	wantEqual(t, "other-1 (its interpreter lives)", qGet(t, q), "other-1")
	wantEqual(t, "host-2", qGet(t, q), "host-2")
	wantGetEmpty(t, "at the end", q)
	waitGone(t, p)
}

// TestQueueUnboundOnIdleKill: an idle worker killed with no call in
// progress: its UNBOUND_REMOVE items are dropped and its others unbound,
// once the death is noticed.
func TestQueueUnboundOnIdleKill(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	victim := create(t, rt)
	mustCall(t, victim, `function(q)
		local interpreters = require("interpreters")
		q:put(1, {unbounditems = interpreters.UNBOUND_REMOVE})
		q:put(2)
		q:put(3, {unbounditems = interpreters.UNBOUND_REMOVE})
	end`, q)
	qPut(t, q, "host")
	p := pid(t, victim)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	deadline := time.Now().Add(bounded)
	for qSize(t, q) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("QSize = %d %v after the kill, want 2", qSize(t, q), bounded)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantUnbound(t, "item 2", q)
	wantEqual(t, "the host's item", qGet(t, q), "host")
	_, err := rt.Lookup(victim.ID())
	wantNotFound(t, "Lookup of the killed interpreter", err)
	waitGone(t, p)
}

// TestQueueKilledGetterSwallowsNothing: an interpreter killed while it
// waits in q:get() leaves the next item to the living.
func TestQueueKilledGetterSwallowsNothing(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	victim := create(t, rt)
	p := pid(t, victim)
	th := victim.CallInThread("function(q) return q:get() end", q)
	waitRunning(t, victim, th.Done())
	waitQueueWaiters(t, rt, q, 1) // the get has reached the queue
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := waitThread(t, th)
	wantKilledExit(t, "the get under the kill", err, victim.ID())
	waitQueueWaiters(t, rt, q, 0) // the dead worker's get is gone
	qPut(t, q, "after")
	wantEqual(t, "the item put after the kill", qGet(t, q), "after")
	waitGone(t, p)
}

// TestQueueUnboundSentinel: Unbound is one comparable value.
func TestQueueUnboundSentinel(t *testing.T) {
	t.Parallel()
	var v any = interpreters.Unbound
	if v != any(interpreters.Unbound) {
		t.Error("Unbound does not compare equal to itself through any")
	}
	if v == nil {
		t.Error("Unbound is nil")
	}
	if interpreters.UnboundReplace == interpreters.UnboundError || interpreters.UnboundError == interpreters.UnboundRemove || interpreters.UnboundReplace == interpreters.UnboundRemove {
		t.Error("the unbound modes are not distinct")
	}
}

// waitQueueGone runs the collector until LookupQueue(id) fails with
// ErrQueueNotFound, for a bounded time. A successful lookup makes a new
// handle, which the next collection drops again.
func waitQueueGone(t *testing.T, rt *interpreters.Runtime, id int64) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		_, err := rt.LookupQueue(id)
		if errors.Is(err, interpreters.ErrQueueNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("LookupQueue(%d): %v", id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %d still exists %v after its last reference went", id, bounded)
		}
	}
}

// collectGarbage runs the collector n times, leaving time for the
// handles' cleanups to run.
func collectGarbage(n int) {
	for range n {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// wantQueueAlive checks that queue id still exists, through a handle that
// is dropped again at once.
func wantQueueAlive(t *testing.T, rt *interpreters.Runtime, id int64, when string) {
	t.Helper()
	q, err := rt.LookupQueue(id)
	if err != nil {
		t.Fatalf("queue %d is gone %s: LookupQueue: %v", id, when, err)
	}
	if q.ID() != id {
		t.Fatalf("LookupQueue(%d) returned queue %d", id, q.ID())
	}
}

// TestQueueDestroyedWhenUnreferenced: a queue nothing reaches any more is
// destroyed; while an interpreter it was handed to lives, or an item of
// another queue carries it, it is not.
func TestQueueDestroyedWhenUnreferenced(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	t.Run("host handle only", func(t *testing.T) {
		id := qNew(t, rt, 0).ID()
		waitQueueGone(t, rt, id)
	})
	t.Run("handed to an interpreter", func(t *testing.T) {
		it := create(t, rt)
		id := func() int64 {
			q := qNew(t, rt, 0)
			qPut(t, q, "kept")
			if err := it.PrepareMain(map[string]any{"q": q}); err != nil {
				t.Fatalf("PrepareMain: %v", err)
			}
			return q.ID()
		}()
		// The host's handle goes; the interpreter still reaches the queue.
		collectGarbage(5)
		wantQueueAlive(t, rt, id, "while an interpreter it was handed to lives")
		wantEqual(t, "the item, from the interpreter", mustCall(t, it, "function() return q:get() end"), "kept")
		closeInterp(t, it)
		waitQueueGone(t, rt, id)
	})
	t.Run("looked up by ID in an interpreter", func(t *testing.T) {
		it := create(t, rt)
		id := func() int64 {
			q := qNew(t, rt, 0)
			// The host's handle must outlive the lookup: a collection
			// before it would destroy the queue.
			mustCall(t, it, `function(id) q = require("interpreters").Queue(id) end`, q.ID())
			runtime.KeepAlive(q)
			return q.ID()
		}()
		collectGarbage(5)
		wantQueueAlive(t, rt, id, "while an interpreter holding a Queue(id) handle lives")
		wantEqual(t, "the handle still works in the interpreter", mustCall(t, it, `function() q:put("x"); return q:get() end`), "x")
		closeInterp(t, it)
		waitQueueGone(t, rt, id)
	})
	t.Run("created in an interpreter", func(t *testing.T) {
		it := create(t, rt)
		id := mustCall(t, it, `function() lq = require("interpreters").create_queue(); lq:put(1); return lq.id end`).(int64)
		collectGarbage(3)
		func() {
			q, err := rt.LookupQueue(id)
			if err != nil {
				t.Fatalf("LookupQueue of a queue its creator still holds: %v", err)
			}
			wantSize(t, "the Lua-made queue", q, 1)
		}()
		closeInterp(t, it)
		waitQueueGone(t, rt, id)
	})
	t.Run("passed to a closed interpreter", func(t *testing.T) {
		it := create(t, rt)
		closeInterp(t, it)
		id := func() int64 {
			q := qNew(t, rt, 0)
			_, err := it.Call("function(q) return q end", q)
			wantNotFound(t, "Call with a queue in a closed interpreter", err)
			wantNotFound(t, "PrepareMain with a queue in a closed interpreter", it.PrepareMain(map[string]any{"q": q}))
			return q.ID()
		}()
		// The refused calls did not leave the closed interpreter holding it.
		waitQueueGone(t, rt, id)
	})
	t.Run("carried by an item of another queue", func(t *testing.T) {
		carrier := qNew(t, rt, 0)
		id := func() int64 {
			inner := qNew(t, rt, 0)
			qPut(t, inner, "inside")
			qPut(t, carrier, map[string]any{"q": inner})
			return inner.ID()
		}()
		collectGarbage(5)
		func() {
			got := qGet(t, carrier).(map[string]any)["q"].(*interpreters.Queue)
			if got.ID() != id {
				t.Fatalf("the carried queue came back as %v, want ID %d", got, id)
			}
			wantEqual(t, "the carried queue's item", qGet(t, got), "inside")
		}()
		waitQueueGone(t, rt, id)
	})
	t.Run("destroyed with its carrier", func(t *testing.T) {
		id := func() int64 {
			carrier := qNew(t, rt, 0)
			inner := qNew(t, rt, 0)
			qPut(t, carrier, inner)
			return inner.ID()
		}()
		waitQueueGone(t, rt, id)
	})
}

// TestQueueHandleKeptWhileWaiting: a Get or Put waiting on a queue keeps
// the handle it was called on, even when the caller has no other
// reference: the queue does not vanish under its own waiter.
func TestQueueHandleKeptWhileWaiting(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	getErr := func() error {
		ctx, cancel := contextWithTimeout(300 * time.Millisecond)
		defer cancel()
		_, err := qNew(t, rt, 0).GetContext(ctx)
		return err
	}()
	wantQueueErr(t, "GetContext on an empty queue nothing else references", getErr, interpreters.ErrQueueEmpty)

	putErr := func() error {
		q := qNew(t, rt, 1)
		qPut(t, q, 1)
		ctx, cancel := contextWithTimeout(300 * time.Millisecond)
		defer cancel()
		return q.PutContext(ctx, 2)
	}()
	wantQueueErr(t, "PutContext on a full queue nothing else references", putErr, interpreters.ErrQueueFull)
}

// TestQueueAfterRuntimeClose: a closed runtime's queues are gone.
func TestQueueAfterRuntimeClose(t *testing.T) {
	t.Parallel()
	rt := interpreters.New()
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Create(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantQueueErr(t, "Put after Close", q.Put(1), interpreters.ErrQueueNotFound)
	_, err = q.Get()
	wantQueueErr(t, "Get after Close", err, interpreters.ErrQueueNotFound)
	_, err = q.QSize()
	wantQueueErr(t, "QSize after Close", err, interpreters.ErrQueueNotFound)
	_, err = rt.LookupQueue(q.ID())
	wantQueueErr(t, "LookupQueue after Close", err, interpreters.ErrQueueNotFound)
}

// TestQueueHandlesInFlightKept: a *Queue whose only reference is the value
// being sent (a queue item, a Call argument, a PrepareMain binding) keeps
// its queue alive until the receiver holds it, however the collector runs
// meanwhile.
func TestQueueHandlesInFlightKept(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	carrier := qNew(t, rt, 0)
	const rounds = 200
	for i := range rounds {
		if err := carrier.Put(qNew(t, rt, 0)); err != nil {
			t.Fatalf("round %d: Put of a fresh queue: %v", i, err)
		}
		res, err := it.Call(`function(q) local ok, e = pcall(q.qsize, q); return ok and "alive" or e.type end`, qNew(t, rt, 0))
		if err != nil {
			t.Fatalf("round %d: Call: %v", i, err)
		}
		if res != "alive" {
			t.Fatalf("round %d: a queue passed only as a Call argument was destroyed on the way: %v", i, res)
		}
		if err := it.PrepareMain(map[string]any{"pq": qNew(t, rt, 0)}); err != nil {
			t.Fatalf("round %d: PrepareMain: %v", i, err)
		}
		if res := mustCall(t, it, `function() local ok, e = pcall(pq.qsize, pq); return ok and "alive" or e.type end`); res != "alive" {
			t.Fatalf("round %d: a queue bound only by PrepareMain was destroyed on the way: %v", i, res)
		}
	}
	for i := range rounds {
		v, err := carrier.GetNowait()
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		q := v.(*interpreters.Queue)
		if _, err := q.QSize(); err != nil {
			t.Fatalf("item %d: a queue whose only reference was a queue item was destroyed on the way: %v", i, err)
		}
	}
}

// TestQueueNilItems: nil is an item like any other, whoever puts or gets
// it.
func TestQueueNilItems(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a := create(t, rt)
	b := create(t, rt)
	q := qNew(t, rt, 0)
	qPut(t, q, nil)
	wantEqual(t, "a nil the host put, got in Lua", mustCall(t, a, `function(q)
		local v = q:get()
		return v == nil, q:qsize()
	end`, q), interpreters.Tuple{true, int64(0)})
	mustCall(t, a, `function(q) q:put(nil); q:put(nil); q:put_nowait(nil) end`, q)
	wantSize(t, "after three nils from Lua", q, 3)
	if v, err := q.GetNowait(); err != nil || v != nil {
		t.Errorf("a nil Lua put, got by the host: %#v, %v", v, err)
	}
	wantEqual(t, "nils Lua put, got in another interpreter", mustCall(t, b, `function(q)
		local x, y = q:get(), q:get_nowait()
		return x == nil and y == nil, q:qsize()
	end`, q), interpreters.Tuple{true, int64(0)})
}

// TestQueueWaitersReleasedByRuntimeClose: a Get or Put waiting when its
// runtime closes returns ErrQueueNotFound instead of waiting forever.
func TestQueueWaitersReleasedByRuntimeClose(t *testing.T) {
	t.Parallel()
	rt := interpreters.New()
	empty, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	full, err := rt.CreateQueue(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Put(1); err != nil {
		t.Fatal(err)
	}
	getter := start(func() (any, error) { return empty.Get() })
	putter := start(func() (any, error) { return nil, full.Put(2) })
	waitQueueWaiters(t, rt, empty, 1)
	waitQueueWaiters(t, rt, full, 1)
	if getter.finished() || putter.finished() {
		t.Fatalf("the waiters returned before the close: %v, %v", getter.err, putter.err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = getter.wait(t)
	wantQueueErr(t, "a Get waiting when the runtime closed", err, interpreters.ErrQueueNotFound)
	_, err = putter.wait(t)
	wantQueueErr(t, "a Put waiting when the runtime closed", err, interpreters.ErrQueueNotFound)
}

// TestQueueRemovedItemsFreeRoom: items dropped because their interpreter
// closed (UNBOUND_REMOVE) free their room at once: a Put waiting on the
// full queue goes in.
func TestQueueRemovedItemsFreeRoom(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 2, interpreters.WithUnboundItems(interpreters.UnboundRemove))
	it := create(t, rt)
	mustCall(t, it, `function(q) q:put("a"); q:put("b") end`, q)
	if !qFull(t, q) {
		t.Fatal("the queue should be full")
	}
	op := start(func() (any, error) {
		ctx, cancel := contextWithTimeout(bounded)
		defer cancel()
		return nil, q.PutContext(ctx, "host")
	})
	waitQueueWaiters(t, rt, q, 1)
	if op.finished() {
		t.Fatalf("Put on a full queue returned at once: %v", op.err)
	}
	closeInterp(t, it)
	if _, err := op.wait(t); err != nil {
		t.Fatalf("the waiting Put after the interpreter's items were removed: %v", err)
	}
	wantSize(t, "after the close and the put", q, 1)
	wantEqual(t, "the only item", qGet(t, q), "host")
}
