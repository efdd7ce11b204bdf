package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// isoKillGrace is how long a stopped call may take to end before its worker
// is killed (the supervisor's default); a call past its deadline returns
// within about this much more.
const isoKillGrace = time.Second

// isoLimitWait bounds an operation that is expected to end on its own (a
// limit, a deadline, a kill): past it the test fails instead of hanging.
const isoLimitWait = 60 * time.Second

// isoCounter counts what reaches an interpreter's stdout writer and keeps
// the first bytes for error messages.
type isoCounter struct {
	n    atomic.Int64
	head syncBuffer
}

func (w *isoCounter) Write(p []byte) (int, error) {
	if w.n.Add(int64(len(p))) <= 256 {
		_, _ = w.head.Write(p)
	}
	return len(p), nil
}

// isoExec runs src in a goroutine under ctx and returns its error and how
// long it took, failing the test if it has not returned within limit.
func isoExec(t *testing.T, ctx context.Context, it *interpreters.Interpreter, src string, limit time.Duration) (error, time.Duration) {
	t.Helper()
	began := time.Now()
	op := startExec(ctx, it, src)
	select {
	case <-op.done:
		return op.err, time.Since(began)
	case <-time.After(limit):
		t.Fatalf("%v.Exec(%.60q) did not return within %v: a call must never hang", it, src, limit)
		return nil, 0
	}
}

// isoSibling is an interpreter that watches a failure next door: it must
// keep its pid and its state.
type isoSibling struct {
	it  *interpreters.Interpreter
	pid int
}

func isoNewSibling(t *testing.T, rt *interpreters.Runtime) isoSibling {
	t.Helper()
	it := create(t, rt)
	mustExec(t, it, "sibling_state = 'intact'")
	return isoSibling{it: it, pid: pid(t, it)}
}

// check fails the test unless the sibling still runs in the same worker
// with its state.
func (s isoSibling) check(t *testing.T) {
	t.Helper()
	if got := pid(t, s.it); got != s.pid {
		t.Errorf("the other interpreter's worker changed from %d to %d", s.pid, got)
	}
	wantEqual(t, "the other interpreter's state", global(t, s.it, "sibling_state"), "intact")
	wantEqual(t, "a call in the other interpreter", mustCall(t, s.it, "string.upper", "ok"), "OK")
}

// isoWantUsable checks that it survived a failed call in the same worker,
// with the global kept set before the failure.
func isoWantUsable(t *testing.T, what string, it *interpreters.Interpreter, workerPid int) {
	t.Helper()
	if got, err := it.Pid(); err != nil || got != workerPid {
		t.Fatalf("%s: the interpreter should have kept its worker %d, got pid %d, %v", what, workerPid, got, err)
	}
	wantEqual(t, what+": state kept", global(t, it, "kept"), "before")
	wantEqual(t, what+": a call afterwards", mustCall(t, it, "function(a, b) return a + b end", 2, 3), int64(5))
}

// isoWaitNotFound polls until the runtime no longer knows it (its worker
// died), then checks that calls say so.
func isoWaitNotFound(t *testing.T, rt *interpreters.Runtime, it *interpreters.Interpreter) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		_, err := rt.Lookup(it.ID())
		if errors.Is(err, interpreters.ErrInterpreterNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Lookup(%d): %v", it.ID(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v is still found %v after its worker died", it, bounded)
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantNotFound(t, "Exec in the interpreter whose worker died", it.Exec("x = 1"))
	if contains(listAll(t, rt), it) {
		t.Errorf("ListAll still holds %v", it)
	}
}

// isoWantNoWorkerExit fails if err says the worker died: a limit that the VM
// enforces must leave the worker running.
func isoWantNoWorkerExit(t *testing.T, what string, err error) {
	t.Helper()
	var wee *interpreters.WorkerExitError
	if errors.As(err, &wee) {
		t.Errorf("%s: the worker died (%q), the VM should have stopped the call itself", what, err)
	}
}

const (
	// isoAllocLoop grows the heap by small steps until something stops it.
	isoAllocLoop = "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end"
	// isoJoinBomb asks for a 4 GiB string in one Go allocation, from a heap
	// well under the soft limit: no interrupt can stop it, only the kernel's
	// limit ends the worker.
	isoJoinBomb = "local s = string.rep('x', 16 * 1024 * 1024) local t = {} " +
		"for i = 1, 256 do t[i] = s end local u = table.concat(t)"
	// isoSparseBomb makes gopher-lua grow a table's array part to 60M slots
	// in one Go call.
	isoSparseBomb = "local t = {} t[60000000] = 1"
)

// TestLimitsMemorySoft: past WithMemoryLimit an allocation loop fails with a
// MemoryError that matches ErrMemoryLimit; the worker lives on and the
// interpreter keeps its state.
func TestLimitsMemorySoft(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	sib := isoNewSibling(t, rt)
	it := create(t, rt, interpreters.WithMemoryLimit(64<<20))
	mustExec(t, it, "kept = 'before'")
	p := pid(t, it)

	err, took := isoExec(t, context.Background(), it, isoAllocLoop, isoLimitWait)
	t.Logf("the allocation loop stopped after %v: %v", took, err)
	wantErr(t, "the allocation loop", err, interpreters.ErrMemoryLimit)
	isoWantNoWorkerExit(t, "the allocation loop", err)
	ef := execFailed(t, "the allocation loop", err)
	wantEqual(t, "Type", ef.Type, "MemoryError")
	if ef.Formatted != "MemoryError: "+ef.Msg {
		t.Errorf("Formatted = %q, want %q", ef.Formatted, "MemoryError: "+ef.Msg)
	}
	for _, other := range []error{interpreters.ErrCPULimit, interpreters.ErrOutputLimit, context.DeadlineExceeded} {
		if errors.Is(err, other) {
			t.Errorf("the MemoryError also matches %v", other)
		}
	}
	isoWantUsable(t, "after the MemoryError", it, p)
	// The failed call's garbage does not count against the next one.
	wantEqual(t, "a modest allocation afterwards",
		mustCall(t, it, "function() local t = {} for i = 1, 1e5 do t[i] = i end return #t end"), int64(100000))

	// A MemoryError is an error like any other to pcall.
	res, err := it.Call(`function()
		local ok, e = pcall(function() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end end)
		return ok, type(e) == "table" and e.type or tostring(e)
	end`)
	if err != nil {
		t.Errorf("the MemoryError should be catchable by pcall, the call failed: %v", err)
	} else {
		wantEqual(t, "pcall's result", res, interpreters.Tuple{false, "MemoryError"})
	}
	isoWantUsable(t, "after the caught MemoryError", it, p)
	sib.check(t)
}

// TestLimitsMemoryShortCalls: a call too short for the running watch to
// sample, that leaves the interpreter holding more than its limit, fails
// with the MemoryError as it ends, and so do calls that add a little each
// until they pass the limit together. A call that lets go of the memory
// succeeds again.
func TestLimitsMemoryShortCalls(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt, interpreters.WithMemoryLimit(16<<20))
	err := it.Exec(`big = string.rep("x", 40e6)`)
	wantErr(t, "a 40 MB string kept under a 16 MiB limit", err, interpreters.ErrMemoryLimit)
	wantEqual(t, "its Type", execFailed(t, "the kept string", err).Type, "MemoryError")
	// The watch may have stopped the Exec before the string was kept (a
	// slow machine, -race); if it was kept, every call fails while it is.
	held, err := it.Call("function() return big ~= nil end")
	if err == nil && held != false {
		t.Errorf("a call while the string is held returned %v with no error", held)
	} else if err != nil {
		wantErr(t, "a call while the string is still held", err, interpreters.ErrMemoryLimit)
	}
	mustExec(t, it, "big = nil")

	var calls int
	for calls = 1; calls <= 100; calls++ {
		_, err = it.Call(`function() chunks = chunks or {} chunks[#chunks + 1] = string.rep("y", 1e6) .. #chunks end`)
		if err != nil {
			break
		}
	}
	t.Logf("the MemoryError came at call %d: %v", calls, err)
	wantErr(t, "1 MB more on each call", err, interpreters.ErrMemoryLimit)
	if calls < 8 || calls > 17 {
		t.Errorf("the limit of 16 MiB was reported at the %d-th 1 MB chunk", calls)
	}
	mustExec(t, it, "chunks = nil")
	wantEqual(t, "a call after letting go", mustCall(t, it, "function() return 1 end"), int64(1))
}

// TestLimitsMemoryRefused: an operation refused because its result alone
// would pass the memory limit is the MemoryError matching ErrMemoryLimit
// (contract, Limits), and the interpreter goes on.
func TestLimitsMemoryRefused(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt, interpreters.WithMemoryLimit(64<<20))
	err := it.Exec(`local s = string.rep("x", 2^31)`)
	wantErr(t, `string.rep("x", 2^31) under a 64 MiB limit`, err, interpreters.ErrMemoryLimit)
	wantEqual(t, "its type", execFailed(t, "the refused string.rep", err).Type, "MemoryError")
	wantEqual(t, "a call after the refusal", mustCall(t, it, "function() return #string.rep('x', 10) end"), int64(10))
}

// TestLimitsMemoryHard: an allocation no interrupt can stop grows the worker
// to the kernel's limit; the call fails with a *WorkerExitError matching
// ErrMemoryLimit and the interpreter is gone.
func TestLimitsMemoryHard(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src string }{
		{"join", isoJoinBomb},
		{"sparse", isoSparseBomb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			sib := isoNewSibling(t, rt)
			it := create(t, rt, interpreters.WithMemoryLimit(64<<20))
			p := pid(t, it)
			err, took := isoExec(t, context.Background(), it, tc.src, 3*isoLimitWait)
			t.Logf("the worker ended after %v: %v", took, err)
			var wee *interpreters.WorkerExitError
			if !errors.As(err, &wee) {
				t.Fatalf("error %v (%T), want *WorkerExitError", err, err)
			}
			wantErr(t, "the worker's death", err, interpreters.ErrMemoryLimit)
			wantErr(t, "the worker's death", err, interpreters.ErrInterpreter)
			wantEqual(t, "InterpreterID", wee.InterpreterID, it.ID())
			if wee.ExitCode == 0 && wee.Signal == "" {
				t.Errorf("the *WorkerExitError reports a clean exit: %+v", wee)
			}
			if wee.StderrTail == "" {
				t.Errorf("the *WorkerExitError carries no stderr tail")
			}
			isoWaitNotFound(t, rt, it)
			waitGone(t, p)
			sib.check(t)
		})
	}
}

// TestLimitsMemoryCauseNotForged: a trusted script that writes the Go
// runtime's and the race detector's out-of-memory reports to stderr, then
// has its worker end some other way, is not reported as over its memory
// limit; the text it wrote is still in the report.
func TestLimitsMemoryCauseNotForged(t *testing.T) {
	t.Parallel()
	const forged = `io.stderr:write("fatal error: out of memory\n",
		"==1==ERROR: ThreadSanitizer failed to allocate 0x10000000 (268435456) bytes (errno: 12)\n",
		"fatal error: too many address space collisions for -race mode\n") io.stderr:flush()`
	for _, tc := range []struct{ signal, wantSignal string }{
		{"KILL", "killed"}, // ended by a signal
		{"ABRT", ""},       // the Go runtime's own crash report, exit status 2
		{"QUIT", ""},
	} {
		t.Run(tc.signal, func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			it := create(t, rt, interpreters.WithStdlib(), interpreters.WithMemoryLimit(64<<20))
			p := pid(t, it)
			err := it.Exec(forged + fmt.Sprintf(` os.execute("kill -%s %d") while true do end`, tc.signal, p))
			var wee *interpreters.WorkerExitError
			if !errors.As(err, &wee) {
				t.Fatalf("error %v (%T), want *WorkerExitError", err, err)
			}
			t.Logf("%v", wee)
			if errors.Is(err, interpreters.ErrMemoryLimit) {
				t.Errorf("a worker ended by SIG%s after its script wrote out-of-memory reports matches ErrMemoryLimit: %v", tc.signal, err)
			}
			if wee.Signal != tc.wantSignal {
				t.Errorf("Signal %q, want %q (exit code %d)", wee.Signal, tc.wantSignal, wee.ExitCode)
			}
			// What the tail shows: the forged text, after a kill; the
			// runtime's own report heading it, after a dump.
			want := "fatal error: out of memory"
			if tc.wantSignal == "" {
				want = "SIG" + tc.signal + ": "
			}
			if !strings.Contains(wee.StderrTail, want) {
				t.Errorf("the stderr tail does not show %q:\n%s", want, wee.StderrTail)
			}
			waitGone(t, p)
		})
	}
}

// TestLimitsCPU: WithCPULimit stops a busy loop with an error matching
// ErrCPULimit, and only counts CPU time: a call that waits is not charged.
func TestLimitsCPU(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	sib := isoNewSibling(t, rt)
	it := create(t, rt, interpreters.WithCPULimit(200*time.Millisecond))
	mustExec(t, it, "kept = 'before'")
	p := pid(t, it)

	err, took := isoExec(t, context.Background(), it, "while true do end", isoLimitWait)
	t.Logf("the loop stopped after %v: %v", took, err)
	wantErr(t, "the busy loop", err, interpreters.ErrCPULimit)
	isoWantNoWorkerExit(t, "the busy loop", err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, interpreters.ErrMemoryLimit) {
		t.Errorf("the CPU limit error %q also matches another limit", err)
	}
	isoWantUsable(t, "after the CPU limit", it, p)

	// The same, caught by nothing: pcall does not swallow the limit.
	err, _ = isoExec(t, context.Background(), it,
		"while true do pcall(function() while true do end end) end", isoLimitWait)
	wantErr(t, "a loop of pcalls", err, interpreters.ErrCPULimit)
	isoWantUsable(t, "after the second CPU limit", it, p)

	// Waiting on a queue for longer than the CPU limit costs no CPU time.
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if err := it.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	th := it.CallInThread("function() return q:get() end")
	waitRunning(t, it, th.Done())
	time.Sleep(600 * time.Millisecond)
	if err := q.Put("late"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	res, err := waitThread(t, th)
	if err != nil {
		t.Errorf("a call that waited 600 ms on a queue under a 200 ms CPU limit failed: %v", err)
	} else {
		wantEqual(t, "the item waited for", res, "late")
	}
	sib.check(t)
}

// TestLimitsCallTimeout: WithCallTimeout is every call's wall-clock
// deadline; past it the call fails with context.DeadlineExceeded and an
// interpreter whose VM stopped keeps its worker and state.
func TestLimitsCallTimeout(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	sib := isoNewSibling(t, rt)
	const timeout = 200 * time.Millisecond
	it := create(t, rt, interpreters.WithCallTimeout(timeout))
	mustExec(t, it, "kept = 'before'")
	p := pid(t, it)

	err, took := isoExec(t, context.Background(), it, "while true do end", isoLimitWait)
	t.Logf("Exec stopped after %v", took)
	wantErr(t, "Exec past the timeout", err, context.DeadlineExceeded)
	isoWantNoWorkerExit(t, "Exec past the timeout", err)
	if errors.Is(err, interpreters.ErrCPULimit) {
		t.Errorf("the timeout %q also matches ErrCPULimit", err)
	}
	if took < timeout {
		t.Errorf("Exec returned after %v, before its %v deadline", took, timeout)
	}
	isoWantUsable(t, "after the timed-out Exec", it, p)

	// A context with a later deadline does not extend the interpreter's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	th := start(func() (any, error) { return it.CallContext(ctx, "function() while true do end end") })
	_, err = th.wait(t)
	wantErr(t, "Call past the timeout under a longer context", err, context.DeadlineExceeded)
	isoWantUsable(t, "after the timed-out Call", it, p)

	// Nor does it stop a call that finishes in time.
	wantEqual(t, "a quick call", mustCall(t, it, "function() local s = 0 for i = 1, 1000 do s = s + i end return s end"), int64(500500))

	// A shorter context deadline wins over a longer timeout.
	long := create(t, rt, interpreters.WithCallTimeout(time.Hour))
	short, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	err, _ = isoExec(t, short, long, "while true do end", isoLimitWait)
	wantErr(t, "a 150 ms context under a one-hour timeout", err, context.DeadlineExceeded)
	sib.check(t)
}

// TestLimitsOutput: no more than WithOutputLimit bytes of one call reach the
// writer, the call fails with ErrOutputLimit, and the next call has a fresh
// budget.
func TestLimitsOutput(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	sib := isoNewSibling(t, rt)
	const limit = 1000
	var w isoCounter
	it := create(t, rt, interpreters.WithOutputLimit(limit), interpreters.WithStdout(&w))
	mustExec(t, it, "kept = 'before'")
	p := pid(t, it)

	for _, tc := range []struct{ name, src string }{
		{"io.write loop", "for i = 1, 1e6 do io.write('0123456789') end"},
		{"print loop", "for i = 1, 1e6 do print('0123456789') end"},
		{"one big write", "io.write(string.rep('x', 5000))"},
		{"caught by pcall", "for i = 1, 1e4 do pcall(io.write, '0123456789') end print('and after')"},
		{"caught by pcall, without end", "while true do pcall(print, 'x') end"},
		{"after a partial write", "io.write(string.rep('y', 999)) io.write('ab') io.write('more')"},
	} {
		before := w.n.Load()
		err, _ := isoExec(t, context.Background(), it, tc.src, isoLimitWait)
		got := w.n.Load() - before
		t.Logf("%s: %d bytes reached the writer: %v", tc.name, got, err)
		wantErr(t, tc.name, err, interpreters.ErrOutputLimit)
		isoWantNoWorkerExit(t, tc.name, err)
		if got > limit {
			t.Errorf("%s: %d bytes reached the writer, more than the limit of %d", tc.name, got, limit)
		}
	}
	isoWantUsable(t, "after the output limit", it, p)

	// The budget is per call: exactly the limit is allowed, every call.
	for i := range 3 {
		before := w.n.Load()
		if err := it.Exec("io.write(string.rep('z', 1000))"); err != nil {
			t.Errorf("call %d writing exactly the limit: %v", i, err)
		}
		if got := w.n.Load() - before; got != limit {
			t.Errorf("call %d wrote %d bytes, want all %d before it returned", i, got, limit)
		}
	}
	sib.check(t)
}

// TestLimitsRuntimeDefaults: limits given to New apply to every Create, and
// an option given to Create overrides them.
func TestLimitsRuntimeDefaults(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, interpreters.WithCallTimeout(200*time.Millisecond), interpreters.WithOutputLimit(100))
	var w1, w2 isoCounter
	it := create(t, rt, interpreters.WithStdout(&w1))
	err, _ := isoExec(t, context.Background(), it, "while true do end", isoLimitWait)
	wantErr(t, "a loop under the runtime's call timeout", err, context.DeadlineExceeded)
	err, _ = isoExec(t, context.Background(), it, "io.write(string.rep('x', 1000))", isoLimitWait)
	wantErr(t, "1000 bytes under the runtime's 100-byte output limit", err, interpreters.ErrOutputLimit)
	if got := w1.n.Load(); got > 100 {
		t.Errorf("%d bytes reached the writer under the runtime's 100-byte limit", got)
	}

	roomy := create(t, rt, interpreters.WithStdout(&w2), interpreters.WithOutputLimit(1<<20))
	if err := roomy.Exec("io.write(string.rep('x', 1000))"); err != nil {
		t.Errorf("1000 bytes with Create's own 1 MiB output limit: %v", err)
	}
	wantEqual(t, "bytes written with the override", w2.n.Load(), int64(1000))
	// The override touched one limit only: the runtime's timeout still holds.
	err, _ = isoExec(t, context.Background(), roomy, "while true do end", isoLimitWait)
	wantErr(t, "a loop in the overriding interpreter", err, context.DeadlineExceeded)
}

// TestLimitsDeepRecursion: runaway recursion, direct or through
// metamethods, is a clean *ExecutionFailed; the worker lives on.
func TestLimitsDeepRecursion(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "kept = 'before'")
	p := pid(t, it)
	for _, tc := range []struct{ name, src string }{
		{"function", "local function f(n) return 1 + f(n + 1) end f(1)"},
		{"__index", "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) local x = t.x"},
		{"__tostring", "local t = setmetatable({}, {__tostring = function(s) return tostring(s) end}) print(t)"},
		{"__add", "local t = setmetatable({}, {__add = function(a, b) return a + b end}) local x = t + 1"},
		{"__concat", "local t = setmetatable({}, {__concat = function(a, b) return a .. b end}) local x = t .. 'x'"},
		{"table.sort", "local t = {3, 2, 1} local function f(a, b) table.sort(t, f) return a < b end table.sort(t, f)"},
	} {
		err, _ := isoExec(t, context.Background(), it, tc.src, isoLimitWait)
		isoWantNoWorkerExit(t, tc.name, err)
		ef := execFailed(t, tc.name, err)
		if !strings.Contains(ef.Msg, "stack overflow") && !strings.Contains(ef.Msg, "recursion") {
			t.Errorf("%s: message %q does not say stack overflow", tc.name, ef.Msg)
		}
		isoWantUsable(t, "after "+tc.name+" recursion", it, p)
	}
	res := mustCall(t, it, `function()
		local function f(n) return 1 + f(n + 1) end
		local ok, e = pcall(f, 1)
		return ok, string.find(tostring(e), "stack overflow", 1, true) ~= nil
	end`)
	wantEqual(t, "pcall of the recursion", res, interpreters.Tuple{false, true})
	isoWantUsable(t, "after the caught recursion", it, p)
}

// TestLimitsUninterruptible: a single Go-side operation the VM cannot
// interrupt still ends at its deadline plus the kill grace, with an error
// matching context.DeadlineExceeded; the interpreter is then either gone or,
// if it stopped after all, usable.
func TestLimitsUninterruptible(t *testing.T) {
	t.Parallel()
	const (
		timeout = 200 * time.Millisecond
		// Backtracking a pattern over 300 characters takes tens of
		// seconds inside one string.find.
		src = `kept = 'before' string.find(string.rep("a", 300), ".-.-.-b")`
	)
	for _, tc := range []struct {
		name string
		opt  []interpreters.Option
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"WithCallTimeout", []interpreters.Option{interpreters.WithCallTimeout(timeout)},
			func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{"context deadline", nil,
			func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), timeout)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := newRuntime(t)
			sib := isoNewSibling(t, rt)
			it := create(t, rt, tc.opt...)
			p := pid(t, it)
			ctx, cancel := tc.ctx()
			defer cancel()
			err, took := isoExec(t, ctx, it, src, isoLimitWait)
			t.Logf("the call returned after %v: %v", took, err)
			wantErr(t, "the uninterruptible call", err, context.DeadlineExceeded)
			// Generous for a loaded machine; the point is that it ends.
			if most := timeout + isoKillGrace + 2*time.Second; took > most {
				t.Errorf("the call returned after %v, more than its deadline plus the kill grace (%v)", took, most)
			}
			// Right after the call the interpreter is either gone, its
			// worker killed, or usable: never reporting the earlier kill as
			// the next call's own failure.
			switch err := it.Exec("after = 1"); {
			case err == nil:
				t.Logf("worker %d survived: the VM stopped by itself", p)
				isoWantUsable(t, "after the deadline", it, p)
			case errors.Is(err, interpreters.ErrInterpreterNotFound):
				isoWaitNotFound(t, rt, it)
				waitGone(t, p)
			default:
				t.Errorf("the call right after the deadline: %v (%T), want success or ErrInterpreterNotFound", err, err)
				isoWaitNotFound(t, rt, it)
			}
			sib.check(t)
		})
	}
}
