package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// Lua task bodies shared by the pool tests.
const (
	// poolCurrentID returns the ID of the worker interpreter it runs in.
	poolCurrentID = `function() return require("interpreters").get_current().id end`
	// poolBlocker tells started which worker it runs in, then waits for an
	// item on release and returns it: a task that stays running until the
	// test lets it go.
	poolBlocker = `function(started, release)
		started:put(require("interpreters").get_current().id)
		return release:get()
	end`
)

// newPool makes a pool in rt. When the test ends the pool is shut down
// without waiting; the runtime's close reaps whatever is left.
func newPool(t *testing.T, rt *interpreters.Runtime, opts interpreters.PoolOptions) *interpreters.Pool {
	t.Helper()
	p, err := rt.NewPool(opts)
	if err != nil {
		t.Fatalf("NewPool(%+v): %v", opts, err)
	}
	if p == nil {
		t.Fatal("NewPool returned a nil *Pool and no error")
	}
	t.Cleanup(func() { _ = p.Shutdown(false, true) })
	return p
}

func poolSubmit(t *testing.T, p *interpreters.Pool, fn string, args ...any) *interpreters.Future {
	t.Helper()
	f, err := p.Submit(fn, args...)
	if err != nil {
		t.Fatalf("Submit(%.60q): %v", fn, err)
	}
	if f == nil {
		t.Fatal("Submit returned a nil *Future and no error")
	}
	return f
}

// poolResult waits for the task, failing the test if it has not finished
// within bounded, and returns its result.
func poolResult(t *testing.T, f *interpreters.Future) (any, error) {
	t.Helper()
	select {
	case <-f.Done():
	case <-time.After(bounded):
		t.Fatalf("the task did not finish within %v", bounded)
	}
	return f.Result(context.Background())
}

// poolRun submits one task and returns its value, failing the test on an
// error.
func poolRun(t *testing.T, p *interpreters.Pool, fn string, args ...any) any {
	t.Helper()
	v, err := poolResult(t, poolSubmit(t, p, fn, args...))
	if err != nil {
		t.Fatalf("task %.60q: %v", fn, err)
	}
	return v
}

// poolNotDone fails the test if the task has already finished.
func poolNotDone(t *testing.T, what string, f *interpreters.Future) {
	t.Helper()
	select {
	case <-f.Done():
		v, err := f.Result(context.Background())
		t.Fatalf("%s: finished (%v, %v) while it should still be pending or running", what, v, err)
	default:
	}
}

// poolStarted waits for the next worker ID a poolBlocker task puts on
// started.
func poolStarted(t *testing.T, started *interpreters.Queue) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	v, err := started.GetContext(ctx)
	if err != nil {
		t.Fatalf("waiting for a task to start: %v", err)
	}
	id, ok := v.(int64)
	if !ok {
		t.Fatalf("a task reported the worker ID %#v (%T), want an int64", v, v)
	}
	return id
}

func poolRelease(t *testing.T, release *interpreters.Queue, vals ...any) {
	t.Helper()
	for _, v := range vals {
		if err := release.Put(v); err != nil {
			t.Fatalf("releasing a task: %v", err)
		}
	}
}

// poolWorkers lists the runtime's interpreters but main: in a runtime
// of its own, a pool's workers.
func poolWorkers(t *testing.T, rt *interpreters.Runtime) []*interpreters.Interpreter {
	t.Helper()
	return listAll(t, rt)[1:]
}

// poolWaitWorkers polls ListAll until ok accepts the workers listed,
// failing the test after bounded.
func poolWaitWorkers(t *testing.T, rt *interpreters.Runtime, what string, ok func([]*interpreters.Interpreter) bool) []*interpreters.Interpreter {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		ws := poolWorkers(t, rt)
		if ok(ws) {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v; workers listed: %v", what, bounded, ws)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func poolNoWorkers(ws []*interpreters.Interpreter) bool { return len(ws) == 0 }

func poolHasID(all []*interpreters.Interpreter, id int64) bool {
	return slices.Contains(ids(all), id)
}

func poolAsID(t *testing.T, what string, v any) int64 {
	t.Helper()
	id, ok := v.(int64)
	if !ok || id <= 0 {
		t.Fatalf("%s: worker ID %#v (%T), want a positive int64", what, v, v)
	}
	return id
}

// TestPoolInitializerStateKept: the initializer runs once in the worker,
// and the globals it and earlier tasks set are seen by later tasks in it.
func TestPoolInitializerStateKept(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{
		MaxWorkers:  1,
		Initializer: "function() counter = 100; inits = (inits or 0) + 1 end",
	})
	const task = `function()
		counter = counter + 1
		return {counter = counter, inits = inits, id = require("interpreters").get_current().id}
	end`
	futures := make([]*interpreters.Future, 4)
	for i := range futures {
		futures[i] = poolSubmit(t, p, task)
	}
	var worker any
	for i, f := range futures {
		v, err := poolResult(t, f)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("task %d returned %#v (%T), want a map", i, v, v)
		}
		// One worker takes the tasks in the order they were submitted.
		wantEqual(t, fmt.Sprintf("task %d: counter", i), m["counter"], int64(101+i))
		wantEqual(t, fmt.Sprintf("task %d: initializer runs", i), m["inits"], int64(1))
		if i == 0 {
			worker = m["id"]
			poolAsID(t, "task 0", worker)
		} else {
			wantEqual(t, fmt.Sprintf("task %d: worker", i), m["id"], worker)
		}
	}
	wantEqual(t, "a later task sees the count", poolRun(t, p, "function() return counter end"), int64(104))
	ws := poolWorkers(t, rt)
	if len(ws) != 1 || ws[0].ID() != worker {
		t.Errorf("ListAll lists the workers %v, want only the one that ran the tasks (ID %v)", ids(ws), worker)
	}
}

// TestPoolInitArgs: InitArgs reach the initializer, copied as Call
// arguments are.
func TestPoolInitArgs(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{
		MaxWorkers:  1,
		Initializer: "function(n, s, list, map, nothing) cfg = {n = n, s = s, list = list, map = map, nargs = select('#', n, s, list, map, nothing)} end",
		InitArgs:    []any{7, "seven", []any{1, 2.5, "x"}, map[string]any{"k": "v"}, nil},
	})
	got := poolRun(t, p, "function() return cfg end")
	wantEqual(t, "what the initializer received", got, map[string]any{
		"n":     int64(7),
		"s":     "seven",
		"list":  []any{int64(1), 2.5, "x"},
		"map":   map[string]any{"k": "v"},
		"nargs": int64(5),
	})
}

// TestPoolRecycleByCount: MaxTasksPerWorker 2 gives a fresh worker, with
// fresh globals, every second task; a recycled worker is closed.
func TestPoolRecycleByCount(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, MaxTasksPerWorker: 2})
	const task = `function()
		n = (n or 0) + 1
		return {require("interpreters").get_current().id, n}
	end`
	var workers []int64
	for i := range 6 {
		v := poolRun(t, p, task)
		pair, ok := v.([]any)
		if !ok || len(pair) != 2 {
			t.Fatalf("task %d returned %#v, want {id, n}", i, v)
		}
		id := poolAsID(t, fmt.Sprintf("task %d", i), pair[0])
		// The global counts the tasks of the worker: 1, 2, then a new
		// worker starts at 1 again.
		wantEqual(t, fmt.Sprintf("task %d: tasks seen by its worker", i), pair[1], int64(i%2+1))
		if i%2 == 0 {
			if slices.Contains(workers, id) {
				t.Errorf("task %d ran in worker %d, which had already been recycled (workers so far %v)", i, id, workers)
			}
			workers = append(workers, id)
			// The worker before it was closed before this one started.
			ws := poolWorkers(t, rt)
			for _, old := range workers[:len(workers)-1] {
				if poolHasID(ws, old) {
					t.Errorf("after task %d the recycled worker %d is still listed: %v", i, old, ids(ws))
				}
			}
			if !poolHasID(ws, id) {
				t.Errorf("after task %d ListAll lists %v, not the worker %d that ran it and has a task left", i, ids(ws), id)
			}
		} else if id != workers[len(workers)-1] {
			t.Errorf("task %d ran in worker %d, want %d, the worker of task %d (2 tasks per worker)", i, id, workers[len(workers)-1], i-1)
		}
	}
	if len(workers) != 3 {
		t.Errorf("6 tasks at 2 per worker ran in %d workers %v, want 3", len(workers), workers)
	}
	// The last worker has done its 2 tasks: it goes too.
	poolWaitWorkers(t, rt, "the last recycled worker closed", poolNoWorkers)
}

// TestPoolRecycleByAge: a worker older than MaxWorkerAge is replaced
// after its task; the old one is closed.
func TestPoolRecycleByAge(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, MaxWorkerAge: 100 * time.Millisecond})
	first := poolAsID(t, "the first task", poolRun(t, p, poolCurrentID))
	deadline := time.Now().Add(bounded)
	for {
		id := poolAsID(t, "a later task", poolRun(t, p, poolCurrentID))
		if id != first {
			if id < first {
				t.Errorf("the new worker has ID %d, below the old %d", id, first)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks still run in worker %d after %v with MaxWorkerAge 100ms", first, bounded)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ws := poolWorkers(t, rt); poolHasID(ws, first) {
		t.Errorf("the worker %d replaced for its age is still listed: %v", first, ids(ws))
	}
	if _, err := rt.Lookup(first); !errors.Is(err, interpreters.ErrInterpreterNotFound) {
		t.Errorf("Lookup of the worker replaced for its age: %v, want ErrInterpreterNotFound", err)
	}
}

// TestPoolRecycleByRSS: a worker whose resident size is above
// MaxWorkerRSS is replaced after each task; one far below it is kept.
func TestPoolRecycleByRSS(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	tiny := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, MaxWorkerRSS: 1})
	var seen []int64
	for i := range 3 {
		id := poolAsID(t, fmt.Sprintf("task %d", i), poolRun(t, tiny, poolCurrentID))
		if slices.Contains(seen, id) {
			t.Errorf("task %d ran in worker %d again although every worker is above MaxWorkerRSS 1 (workers %v)", i, id, seen)
		}
		seen = append(seen, id)
	}
	if err := tiny.Shutdown(true, false); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantList(t, "ListAll after the pool's Shutdown", listAll(t, rt), rt.GetMain())

	roomy := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, MaxWorkerRSS: 1 << 40})
	a := poolRun(t, roomy, poolCurrentID)
	b := poolRun(t, roomy, poolCurrentID)
	if a != b {
		t.Errorf("a worker far below MaxWorkerRSS was replaced: tasks ran in %v then %v", a, b)
	}
}

// TestPoolWorkerKilled: the SIGKILL of the worker running a task fails that
// task alone with *WorkerExitError; the task running in the other worker,
// and the tasks waiting, succeed, the later ones in a replacement.
func TestPoolWorkerKilled(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 2})
	victimStarted, started, release := newQueue(t, rt), newQueue(t, rt), newQueue(t, rt)

	victim := poolSubmit(t, p, `function(started)
		started:put(require("interpreters").get_current().id)
		while true do end
	end`, victimStarted)
	other := poolSubmit(t, p, poolBlocker, started, release)
	victimID := poolStarted(t, victimStarted)
	otherID := poolStarted(t, started)
	waiting := make([]*interpreters.Future, 3)
	for i := range waiting {
		waiting[i] = poolSubmit(t, p, "function(x) return {x, require('interpreters').get_current().id} end", i)
	}

	var victimIt *interpreters.Interpreter
	for _, it := range poolWorkers(t, rt) {
		if it.ID() == victimID {
			victimIt = it
		}
	}
	if victimIt == nil {
		t.Fatalf("the worker %d running the task is not listed", victimID)
	}
	wantRunning(t, victimIt, true)
	victimPid := pid(t, victimIt)
	if err := syscall.Kill(victimPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := poolResult(t, victim)
	wantWorkerKilled(t, "the task whose worker was killed", err, victimID)
	poolNotDone(t, "the task in the other worker", other)

	for i, f := range waiting {
		v, err := poolResult(t, f)
		if err != nil {
			t.Fatalf("waiting task %d after the kill: %v", i, err)
		}
		pair, ok := v.([]any)
		if !ok || len(pair) != 2 {
			t.Fatalf("waiting task %d returned %#v", i, v)
		}
		wantEqual(t, fmt.Sprintf("waiting task %d: value", i), pair[0], int64(i))
		id := poolAsID(t, fmt.Sprintf("waiting task %d", i), pair[1])
		if id == victimID || id == otherID {
			t.Errorf("waiting task %d ran in worker %d; the killed one is %d and the other is still busy (%d)", i, id, victimID, otherID)
		}
	}
	poolRelease(t, release, "released")
	v, err := poolResult(t, other)
	if err != nil {
		t.Fatalf("the task in the other worker: %v", err)
	}
	wantEqual(t, "the task in the other worker", v, "released")

	waitGone(t, victimPid)
	ws := poolWorkers(t, rt)
	if poolHasID(ws, victimID) {
		t.Errorf("the killed worker %d is still listed: %v", victimID, ids(ws))
	}
	if len(ws) > 2 {
		t.Errorf("%d workers listed for MaxWorkers 2: %v", len(ws), ids(ws))
	}
	_, err = rt.Lookup(victimID)
	wantNotFound(t, "Lookup of the killed worker", err)
	for i := range 4 {
		id := poolAsID(t, fmt.Sprintf("task %d after the kill", i), poolRun(t, p, poolCurrentID))
		if id == victimID {
			t.Errorf("a task after the kill ran in the killed worker %d", id)
		}
	}
}

// TestPoolShutdownCancelPending: Shutdown(wait, cancelPending) fails the
// tasks not yet started with context.Canceled, lets the running one finish,
// waits for it, and leaves no worker; Submit is refused afterwards.
func TestPoolShutdownCancelPending(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1})
	started, release := newQueue(t, rt), newQueue(t, rt)
	running := poolSubmit(t, p, poolBlocker, started, release)
	poolStarted(t, started)
	pending := make([]*interpreters.Future, 3)
	for i := range pending {
		pending[i] = poolSubmit(t, p, "function(x) return x end", i)
	}

	shut := start(func() (any, error) { return nil, p.Shutdown(true, true) })
	for i, f := range pending {
		_, err := poolResult(t, f)
		wantErr(t, fmt.Sprintf("pending task %d after Shutdown(cancelPending)", i), err, context.Canceled)
	}
	poolNotDone(t, "the running task", running)
	if shut.finished() {
		t.Fatalf("Shutdown(wait=true) returned (%v) while a task was still running", shut.err)
	}
	_, err := p.Submit("tostring", 1)
	wantErr(t, "Submit after Shutdown", err, interpreters.ErrPoolShutdown)
	_, err = p.Submit("this is not even checked")
	wantErr(t, "a second Submit after Shutdown", err, interpreters.ErrPoolShutdown)
	_, err = p.Submit("tostring", func() {})
	wantErr(t, "a Submit after Shutdown with an argument that cannot be shared", err, interpreters.ErrPoolShutdown)

	poolRelease(t, release, "finished")
	v, err := poolResult(t, running)
	if err != nil {
		t.Fatalf("the running task: %v", err)
	}
	wantEqual(t, "the running task's result", v, "finished")
	if _, err := shut.wait(t); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	// Shutdown(wait=true) returns once every worker is closed.
	wantList(t, "ListAll after Shutdown(wait=true)", listAll(t, rt), rt.GetMain())
	if err := p.Shutdown(true, true); err != nil {
		t.Errorf("a second Shutdown: %v", err)
	}
}

// TestPoolShutdownKeepsPending: Shutdown(wait=false, cancelPending=false)
// returns at once, and the tasks already submitted still run, even when a
// worker has to be replaced to run them.
func TestPoolShutdownKeepsPending(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts interpreters.PoolOptions
	}{
		{"one worker", interpreters.PoolOptions{MaxWorkers: 1}},
		{"recycled after each task", interpreters.PoolOptions{MaxWorkers: 1, MaxTasksPerWorker: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			p := newPool(t, rt, tc.opts)
			started, release := newQueue(t, rt), newQueue(t, rt)
			running := poolSubmit(t, p, poolBlocker, started, release)
			poolStarted(t, started)
			pending := make([]*interpreters.Future, 3)
			for i := range pending {
				pending[i] = poolSubmit(t, p, "function(x) return x * 10 end", i+1)
			}
			// The running task cannot end before the release below, so a
			// Shutdown that waited would never return here.
			shut := start(func() (any, error) { return nil, p.Shutdown(false, false) })
			if _, err := shut.wait(t); err != nil {
				t.Fatalf("Shutdown(false, false): %v", err)
			}
			poolNotDone(t, "the running task", running)
			for i, f := range pending {
				poolNotDone(t, fmt.Sprintf("pending task %d", i), f)
			}
			_, err := p.Submit("tostring", 1)
			wantErr(t, "Submit after Shutdown", err, interpreters.ErrPoolShutdown)

			poolRelease(t, release, "finished")
			v, err := poolResult(t, running)
			if err != nil {
				t.Fatalf("the running task: %v", err)
			}
			wantEqual(t, "the running task", v, "finished")
			for i, f := range pending {
				v, err := poolResult(t, f)
				if err != nil {
					t.Errorf("pending task %d: %v", i, err)
					continue
				}
				wantEqual(t, fmt.Sprintf("pending task %d", i), v, int64((i+1)*10))
			}
			poolWaitWorkers(t, rt, "every worker closed after the last task", poolNoWorkers)
		})
	}
}

// TestPoolMap: Map returns the results in the items' order whatever order
// the tasks finish in; it reports a task's error, a refused item, and an
// ended context.
func TestPoolMap(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 4})
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()

	const n = 12
	items := make([]any, n)
	want := make([]any, n)
	for i := range items {
		items[i] = i
		want[i] = int64(i * i)
	}
	// The first items take longest, so later ones finish first.
	got, err := p.Map(ctx, fmt.Sprintf(`function(x)
		local s = 0
		for i = 1, (%d - x) * 20000 do s = s + i end
		return x * x
	end`, n), items)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	wantEqual(t, "Map's results", got, want)

	got, err = p.Map(ctx, "function(s) return s:upper() end", []any{"a", []byte("b"), "c"})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	wantEqual(t, "Map over strings", got, []any{"A", "B", "C"})

	got, err = p.Map(ctx, "tostring", nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Map over no items = %#v, %v; want no results and no error", got, err)
	}

	_, err = p.Map(ctx, "function(x) if x == 2 then error('no two', 0) end return x end", []any{1, 2, 3})
	ef := execFailed(t, "Map with a failing item", err)
	wantEqual(t, "the failing item's message", ef.Msg, "no two")

	_, err = p.Map(ctx, "tostring", []any{1, make(chan int), 3})
	wantNotShareable(t, "Map with an unshareable item", err)

	done, stop := context.WithCancel(t.Context())
	stop()
	_, err = p.Map(done, "function(x) return x end", []any{1, 2})
	wantErr(t, "Map with a cancelled context", err, context.Canceled)

	// The tasks Map left behind still run; the pool drains them.
	shut := start(func() (any, error) { return nil, p.Shutdown(true, false) })
	if _, err := shut.wait(t); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wantList(t, "ListAll after Shutdown", listAll(t, rt), rt.GetMain())
}

// TestPoolFuture: Done closes when the task ends; Result with an ended
// context returns the context's error and leaves the task running.
func TestPoolFuture(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1})
	started, release := newQueue(t, rt), newQueue(t, rt)
	f := poolSubmit(t, p, poolBlocker, started, release)
	poolStarted(t, started)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	v, err := f.Result(cancelled)
	wantErr(t, "Result with a cancelled context", err, context.Canceled)
	if v != nil {
		t.Errorf("Result with a cancelled context returned the value %#v", v)
	}
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	_, err = f.Result(expired)
	wantErr(t, "Result with an expired context", err, context.DeadlineExceeded)
	poolNotDone(t, "the task after Result gave up", f)

	poolRelease(t, release, "value")
	select {
	case <-f.Done():
	case <-time.After(bounded):
		t.Fatalf("Done not closed within %v of the task's release", bounded)
	}
	for i := range 2 {
		v, err := f.Result(t.Context())
		if err != nil {
			t.Fatalf("Result %d: %v", i, err)
		}
		wantEqual(t, fmt.Sprintf("Result %d", i), v, "value")
	}
	// Done stays closed.
	select {
	case <-f.Done():
	default:
		t.Error("Done is not closed any more")
	}

	// A failed task: Done closes too, and Result gives the typed error.
	bad := poolSubmit(t, p, "function() error({type = 'ValueError', msg = 'spam'}) end")
	_, err = poolResult(t, bad)
	ef := execFailed(t, "a failing task", err)
	wantEqual(t, "Type", ef.Type, "ValueError")
	wantEqual(t, "Msg", ef.Msg, "spam")
	_, err = poolResult(t, poolSubmit(t, p, "no_such_function"))
	wantEqual(t, "a task whose fn is not a function: Type", execFailed(t, "not a function", err).Type, "TypeError")
}

// TestPoolMinIdle: MinIdle workers are started by NewPool, before any task,
// and kept warm beyond the busy ones, each with its initializer run.
func TestPoolMinIdle(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 4, MinIdle: 2, Initializer: "function() warmed = true end"})
	warm := poolWaitWorkers(t, rt, "2 idle workers after NewPool", func(ws []*interpreters.Interpreter) bool {
		if len(ws) > 2 {
			t.Fatalf("%d workers listed for MinIdle 2 with no task: %v", len(ws), ids(ws))
		}
		return len(ws) == 2
	})

	started, release := newQueue(t, rt), newQueue(t, rt)
	busy := poolSubmit(t, p, poolBlocker, started, release)
	busyID := poolStarted(t, started)
	if !poolHasID(warm, busyID) {
		t.Errorf("the task ran in worker %d, not in one of the warm workers %v", busyID, ids(warm))
	}
	// One busy, two idle again.
	poolWaitWorkers(t, rt, "2 idle workers beside the busy one", func(ws []*interpreters.Interpreter) bool {
		if len(ws) > 3 {
			t.Fatalf("%d workers listed for MinIdle 2 and one task: %v", len(ws), ids(ws))
		}
		return len(ws) == 3
	})
	wantEqual(t, "a task in a warm worker sees the initializer's global", poolRun(t, p, "function() return warmed end"), true)
	poolRelease(t, release, 1)
	if _, err := poolResult(t, busy); err != nil {
		t.Fatalf("the busy task: %v", err)
	}
	if ws := poolWorkers(t, rt); len(ws) < 2 || len(ws) > 4 {
		t.Errorf("%d workers listed after the tasks, want between MinIdle 2 and MaxWorkers 4: %v", len(ws), ids(ws))
	}
	if err := p.Shutdown(true, false); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantList(t, "ListAll after Shutdown", listAll(t, rt), rt.GetMain())
}

// TestPoolFailingInitializer: a task that lands on a worker whose
// initializer failed reports the initializer's *ExecutionFailed; the pool
// tries a new worker for the next task, and shuts down cleanly.
func TestPoolFailingInitializer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, init, typ, msg string
	}{
		{"raises", "function() error({type = 'ValueError', msg = 'bad init'}) end", "ValueError", "bad init"},
		{"not a function", "no_such_initializer", "TypeError", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, Initializer: tc.init})
			var workers []int64
			for i := range 3 {
				_, err := poolResult(t, poolSubmit(t, p, "function() return 'ran' end"))
				ef := execFailed(t, fmt.Sprintf("task %d", i), err)
				wantEqual(t, fmt.Sprintf("task %d: Type", i), ef.Type, tc.typ)
				if tc.msg != "" {
					wantEqual(t, fmt.Sprintf("task %d: Msg", i), ef.Msg, tc.msg)
				}
				if slices.Contains(workers, ef.InterpreterID) {
					t.Errorf("task %d: the initializer failed in worker %d again; a new worker should be tried (workers %v)", i, ef.InterpreterID, workers)
				}
				workers = append(workers, ef.InterpreterID)
			}
			// A worker whose initializer failed is not kept.
			ws := poolWaitWorkers(t, rt, "the failed workers closed", func(ws []*interpreters.Interpreter) bool {
				for _, id := range workers {
					if poolHasID(ws, id) {
						return false
					}
				}
				return true
			})
			if len(ws) > 1 {
				t.Errorf("%d workers listed for MaxWorkers 1: %v", len(ws), ids(ws))
			}
			shut := start(func() (any, error) { return nil, p.Shutdown(true, false) })
			if _, err := shut.wait(t); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			wantList(t, "ListAll after Shutdown", listAll(t, rt), rt.GetMain())
		})
	}
}

// TestPoolNotShareable: an argument that cannot be copied is refused by
// Submit itself, and an InitArgs one by NewPool; no worker is started for
// them.
func TestPoolNotShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	_, err := rt.NewPool(interpreters.PoolOptions{MaxWorkers: 1, Initializer: "tostring", InitArgs: []any{func() {}}})
	wantNotShareable(t, "NewPool with a func in InitArgs", err)

	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1})
	for _, tc := range []struct {
		name string
		arg  any
	}{
		{"chan", make(chan int)},
		{"func", func() {}},
		{"struct", struct{ A int }{1}},
		{"int-keyed map", map[int]any{1: "x"}},
		{"nested", []any{1, map[string]any{"f": func() {}}}},
		{"integer beyond 2^53", int64(1) << 60},
	} {
		f, err := p.Submit("tostring", tc.arg)
		wantNotShareable(t, "Submit with a "+tc.name, err)
		if f != nil {
			t.Errorf("Submit with a %s returned a Future along with its error", tc.name)
		}
	}
	wantList(t, "ListAll after refused Submits", listAll(t, rt), rt.GetMain())
	wantEqual(t, "a shareable Submit afterwards", poolRun(t, p, "function(t) return #t end", []any{1, 2, 3}), int64(3))

	for _, opts := range []interpreters.PoolOptions{
		{MaxWorkers: -1}, {MinIdle: -1}, {MaxTasksPerWorker: -1}, {MaxWorkerRSS: -1}, {MaxWorkerAge: -time.Second},
	} {
		_, err := rt.NewPool(opts)
		wantInvalid(t, fmt.Sprintf("NewPool(%+v)", opts), err)
	}
}

// TestPoolMaxWorkersBound: however many tasks wait, and while workers are
// recycled, no more than MaxWorkers pool interpreters exist at once.
func TestPoolMaxWorkersBound(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	const maxWorkers, tasks = 3, 9
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: maxWorkers, MaxTasksPerWorker: 2})
	started, release := newQueue(t, rt), newQueue(t, rt)

	var (
		mu      sync.Mutex
		most    int
		samples int
	)
	stop := make(chan struct{})
	sampler := start(func() (any, error) {
		for {
			all, err := rt.ListAll()
			if err != nil {
				return nil, err
			}
			mu.Lock()
			most = max(most, len(all)-1)
			samples++
			mu.Unlock()
			select {
			case <-stop:
				return nil, nil
			case <-time.After(2 * time.Millisecond):
			}
		}
	})

	futures := make([]*interpreters.Future, tasks)
	for i := range futures {
		futures[i] = poolSubmit(t, p, poolBlocker, started, release)
	}
	var first []int64
	for range maxWorkers {
		first = append(first, poolStarted(t, started))
	}
	// Every worker is busy: no further task can have started.
	if v, err := started.GetNowait(); !errors.Is(err, interpreters.ErrQueueEmpty) {
		t.Fatalf("a task beyond MaxWorkers %d started (got %v, %v)", maxWorkers, v, err)
	}
	ws := poolWorkers(t, rt)
	if len(ws) != maxWorkers {
		t.Errorf("%d workers listed with %d tasks running, want %d: %v", len(ws), maxWorkers, maxWorkers, ids(ws))
	}
	for _, id := range first {
		if !poolHasID(ws, id) {
			t.Errorf("the worker %d running a task is not listed: %v", id, ids(ws))
		}
	}
	for _, it := range ws {
		wantRunning(t, it, true)
	}

	// Let the tasks go one at a time: each release lets the next pending
	// task start, in a worker recycled after 2 tasks.
	workers := map[int64]int{}
	for _, id := range first {
		workers[id]++
	}
	for i := range tasks {
		poolRelease(t, release, i)
		if i+maxWorkers < tasks {
			workers[poolStarted(t, started)]++
		}
	}
	for i, f := range futures {
		if _, err := poolResult(t, f); err != nil {
			t.Errorf("task %d: %v", i, err)
		}
	}
	close(stop)
	if _, err := sampler.wait(t); err != nil {
		t.Fatalf("ListAll while the tasks ran: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > maxWorkers {
		t.Errorf("ListAll listed %d pool interpreters at once, more than MaxWorkers %d", most, maxWorkers)
	}
	if samples == 0 {
		t.Error("ListAll was never sampled")
	}
	for id, n := range workers {
		if n > 2 {
			t.Errorf("worker %d ran %d tasks, past MaxTasksPerWorker 2", id, n)
		}
	}
	if len(workers) < (tasks+1)/2 {
		t.Errorf("%d tasks at 2 per worker ran in %d workers, want at least %d", tasks, len(workers), (tasks+1)/2)
	}
	if ws := poolWorkers(t, rt); len(ws) > maxWorkers {
		t.Errorf("%d workers listed after the tasks: %v", len(ws), ids(ws))
	}
}

// TestPoolIdleWorkerKilled: a worker killed while it waits for a task ran
// no task, so it fails none: the next task runs in a replacement.
func TestPoolIdleWorkerKilled(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1})
	first := poolAsID(t, "the first task", poolRun(t, p, poolCurrentID))
	it, err := rt.Lookup(first)
	if err != nil {
		t.Fatalf("Lookup of the idle worker: %v", err)
	}
	wantRunning(t, it, false)
	workerPid := pid(t, it)
	if err := syscall.Kill(workerPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitGone(t, workerPid)
	poolWaitWorkers(t, rt, "the killed idle worker dropped from ListAll", func(ws []*interpreters.Interpreter) bool {
		return !poolHasID(ws, first)
	})
	for i := range 2 {
		v, err := poolResult(t, poolSubmit(t, p, poolCurrentID))
		if err != nil {
			t.Fatalf("task %d after the idle worker was killed: %v", i, err)
		}
		if id := poolAsID(t, fmt.Sprintf("task %d after the kill", i), v); id == first {
			t.Errorf("task %d ran in the killed worker %d", i, id)
		}
	}
}

// TestPoolResultOfFinishedTask: once the task has finished, Result returns
// its value even under a context that has already ended.
func TestPoolResultOfFinishedTask(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1})
	f := poolSubmit(t, p, "function() return 42 end")
	if _, err := poolResult(t, f); err != nil {
		t.Fatalf("the task: %v", err)
	}
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 20 {
		v, err := f.Result(ended)
		if err != nil || v != int64(42) {
			t.Fatalf("Result %d of a finished task under an ended context = %#v, %v; want 42, nil", i, v, err)
		}
	}
}

// TestPoolRuntimeClosed: closing the runtime under a pool fails the
// running and the pending tasks with ErrInterpreterNotFound, never leaves
// one hanging, and the pool still shuts down. Not parallel: what the race
// detector finds here is then reported against this test alone.
func TestPoolRuntimeClosed(t *testing.T) {
	rt := newRuntime(t)
	const workers = 4
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: workers})
	started, release := newQueue(t, rt), newQueue(t, rt)
	running := make([]*interpreters.Future, workers)
	for i := range running {
		running[i] = poolSubmit(t, p, poolBlocker, started, release)
	}
	for range workers {
		poolStarted(t, started)
	}
	pending := poolSubmit(t, p, "function() return 1 end")
	restartClose(t, rt)
	for i, f := range running {
		_, err := poolResult(t, f)
		wantNotFound(t, fmt.Sprintf("running task %d when the runtime closed", i), err)
	}
	_, err := poolResult(t, pending)
	wantNotFound(t, "a pending task when the runtime closed", err)
	_, err = poolResult(t, poolSubmit(t, p, "function() return 1 end"))
	wantNotFound(t, "a task submitted after the runtime closed", err)
	shut := start(func() (any, error) { return nil, p.Shutdown(true, false) })
	if _, err := shut.wait(t); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestPoolInitializerRecovers: with warm workers kept, an initializer that
// fails at first is retried until it succeeds; no warm worker holds on to
// a failure that no longer applies. The task is submitted once an
// initializer has said it succeeded: a task submitted while a failing one
// still runs is the task that failure is reported to.
func TestPoolInitializerRecovers(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	failures, succeeded := newQueue(t, rt), newQueue(t, rt)
	for range 2 {
		if err := failures.Put(true); err != nil {
			t.Fatal(err)
		}
	}
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 2, MinIdle: 1, InitArgs: []any{failures, succeeded},
		Initializer: `function(q, ok) if not q:empty() then q:get_nowait() error("not yet", 0) end
			ok:put(require("interpreters").get_current().id) end`})
	warm := poolStarted(t, succeeded)
	if n, err := failures.QSize(); err != nil || n != 0 {
		t.Fatalf("failures left once an initializer succeeded: %d, %v; want 0", n, err)
	}
	wantEqual(t, "the worker a task runs in after the initializer recovered", poolRun(t, p, poolCurrentID), warm)
}

// TestPoolInitializerBackoff: workers whose initializer keeps failing are
// started no faster than the backoff allows, however many tasks arrive.
func TestPoolInitializerBackoff(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	attempts := newQueue(t, rt)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, InitArgs: []any{attempts},
		Initializer: `function(q) q:put(1) error("never", 0) end`})
	// Each task is submitted once the one before has failed, so every
	// Submit asks for a worker: none may start before its backoff is over.
	deadline := time.Now().Add(300 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		f := poolSubmit(t, p, "function() return 1 end")
		select {
		case <-f.Done():
			_, err := f.Result(context.Background())
			wantEqual(t, fmt.Sprintf("task %d fails with the initializer's error", i), execFailed(t, "the task", err).Msg, "never")
		case <-time.After(time.Until(deadline)):
		}
	}
	// Backoffs of 50, 100 and 200 ms leave room for at most four attempts.
	if n, err := attempts.QSize(); err != nil || n > 4 {
		t.Errorf("%d initializer attempts in 300ms (%v), want at most 4", n, err)
	}
	// Shutdown does not wait out a backoff when nothing is left to run.
	if _, err := start(func() (any, error) { return nil, p.Shutdown(true, true) }).wait(t); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestPoolShutdownEndsInitializer: cancelling the pending tasks also ends
// an initializer that never returns, so Shutdown(wait) returns.
func TestPoolShutdownEndsInitializer(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, Initializer: "function() while true do end end"})
	f := poolSubmit(t, p, "function() return 1 end")
	poolWaitWorkers(t, rt, "the worker running its initializer", func(ws []*interpreters.Interpreter) bool { return len(ws) == 1 })
	if _, err := start(func() (any, error) { return nil, p.Shutdown(true, true) }).wait(t); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	_, err := poolResult(t, f)
	wantErr(t, "the pending task", err, context.Canceled)
	wantList(t, "ListAll after Shutdown", listAll(t, rt), rt.GetMain())
}

// TestPoolMapCancelsRest: when Map returns an error, the tasks it submitted
// that have not started are cancelled, as Executor.map cancels them.
func TestPoolMapCancelsRest(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	ran, release := newQueue(t, rt), newQueue(t, rt)
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, Initializer: "function(q, r) Q, R = q, r end", InitArgs: []any{ran, release}})
	items := []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	// Every task but the failing one waits for release, so however late
	// Map gets to cancel, the one worker has started at most one more.
	_, err := p.Map(context.Background(), `function(i) Q:put(i) if i == 1 then error("first", 0) end R:get() return i end`, items)
	wantEqual(t, "Map's error", execFailed(t, "Map", err).Msg, "first")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Map(ctx, `function(i) Q:put(i) return i end`, items)
	wantErr(t, "Map with a cancelled context", err, context.Canceled)
	poolRelease(t, release, items...)
	if _, err := start(func() (any, error) { return nil, p.Shutdown(true, false) }).wait(t); err != nil {
		t.Fatal(err)
	}
	// The failing item, and at most the one a worker took meanwhile.
	if n, err := ran.QSize(); err != nil || n > 2 {
		t.Errorf("%d tasks ran (%v), want at most 2", n, err)
	}
}

// TestPoolRecyclesBeforeTask: a worker past MaxWorkerAge starts no more
// tasks, and one left holding more than its memory limit is replaced.
func TestPoolRecyclesBeforeTask(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, interpreters.WithMemoryLimit(64<<20))
	p := newPool(t, rt, interpreters.PoolOptions{MaxWorkers: 1, MaxWorkerAge: 200 * time.Millisecond})
	first := poolRun(t, p, poolCurrentID)
	time.Sleep(300 * time.Millisecond)
	if second := poolRun(t, p, poolCurrentID); second == first {
		t.Errorf("a worker past its age ran another task (worker %v)", first)
	}
	_, err := poolResult(t, poolSubmit(t, p, `function() bomb = {} for i = 1, 1e9 do bomb[i] = string.rep("y", 1000) .. i end end`))
	wantErr(t, "the task that keeps too much", err, interpreters.ErrMemoryLimit)
	wantEqual(t, "the next task, on a new worker", poolRun(t, p, "function() return bomb == nil end"), true)
}
