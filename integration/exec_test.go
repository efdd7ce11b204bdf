package integration

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

func TestExecSuccess(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	mustExec(t, it, `io.write("it worked!")`)
	wantEqual(t, "output", out.String(), "it worked!")
	mustExec(t, it, "")
	mustExec(t, it, "-- only a comment")
	mustExec(t, it, "return 5")
}

func TestExecInGoroutine(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	var wg sync.WaitGroup
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		err = it.Exec(`io.write("it worked!")`)
	}()
	wg.Wait()
	if err != nil {
		t.Fatalf("Exec in a goroutine: %v", err)
	}
	wantEqual(t, "output", out.String(), "it worked!")
}

// TestExecGlobalsPersist: the interpreter's "__main__" is its global table,
// kept across Exec, Call and PrepareMain until Close.
func TestExecGlobalsPersist(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "spam = 42")
	mustExec(t, it, "eggs = spam + 1")
	mustExec(t, it, "function double(x) return x * 2 end")
	wantEqual(t, "eggs", global(t, it, "eggs"), int64(43))
	wantEqual(t, "double(eggs)", mustCall(t, it, "double", global(t, it, "eggs")), int64(86))
	mustCall(t, it, "function(v) ham = v end", "from call")
	mustExec(t, it, "assert(ham == 'from call', 'ham is ' .. tostring(ham))")
	if err := it.PrepareMain(map[string]any{"bound": int64(7)}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, it, "assert(bound == 7) bound = bound + spam")
	wantEqual(t, "bound", global(t, it, "bound"), int64(49))
	// The chunk's environment is the global table itself.
	mustExec(t, it, "_G.via_G = 'g'")
	wantEqual(t, "via_G", global(t, it, "via_G"), "g")
	// A chunk's locals are its own.
	mustExec(t, it, "local hidden = 1")
	wantEqual(t, "hidden", global(t, it, "hidden"), nil)
}

func TestExecFailure(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	err := it.Exec(`error("x", 0)`)
	ef := execFailed(t, "error('x', 0)", err)
	wantEqual(t, "Type", ef.Type, "LuaError")
	wantEqual(t, "Msg", ef.Msg, "x")
	wantEqual(t, "Formatted", ef.Formatted, "LuaError: x")
	wantEqual(t, "InterpreterID", ef.InterpreterID, it.ID())
	if ef.Errdisplay == "" {
		t.Error("Errdisplay is empty, want the Lua traceback")
	}
	wantEqual(t, "Error()", err.Error(), ef.Formatted+"\n\nUncaught in the interpreter:\n\n"+ef.Errdisplay)
	if errors.Is(err, interpreters.ErrInterpreterNotFound) || errors.Is(err, interpreters.ErrAlreadyRunning) ||
		errors.Is(err, interpreters.ErrNotShareable) {
		t.Errorf("*ExecutionFailed %q matches an unrelated sentinel", err)
	}

	// At level 1 the message carries a position, and still ends with the
	// text.
	ef = execFailed(t, "error('boom')", it.Exec(`error("boom")`))
	wantEqual(t, "Type", ef.Type, "LuaError")
	if !strings.HasSuffix(ef.Msg, "boom") {
		t.Errorf("Msg = %q, want it to end with boom", ef.Msg)
	}
	wantEqual(t, "Formatted", ef.Formatted, ef.Type+": "+ef.Msg)

	// A runtime error raised by Lua itself.
	ef = execFailed(t, "indexing nil", it.Exec("local t = nil; return t.field"))
	wantEqual(t, "Type", ef.Type, "LuaError")
	wantEqual(t, "Formatted", ef.Formatted, ef.Type+": "+ef.Msg)
	if ef.Msg == "" {
		t.Error("Msg of a runtime error is empty")
	}
	// The interpreter stays usable.
	wantEqual(t, "call after failures", mustCall(t, it, "function() return 'fine' end"), "fine")
}

// TestExecPartial: what ran before the error stays done; what follows does
// not run.
func TestExecPartial(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	err := it.Exec("a = 1\nprint('before')\nerror('stop', 0)\nb = 2\nprint('after')")
	ef := execFailed(t, "partial chunk", err)
	wantEqual(t, "Msg", ef.Msg, "stop")
	wantEqual(t, "a", global(t, it, "a"), int64(1))
	wantEqual(t, "b", global(t, it, "b"), nil)
	wantEqual(t, "output", out.String(), "before\n")
}

// TestExecSyntaxError: a chunk that does not compile runs not at all.
func TestExecSyntaxError(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	for _, src := range []string{"x = = 1", "ran = true\nif then", "ran = true\nfunction(", "ran = true\nreturn return"} {
		ef := execFailed(t, fmt.Sprintf("Exec(%q)", src), it.Exec(src))
		wantEqual(t, "Type of "+src, ef.Type, "SyntaxError")
		wantEqual(t, "Formatted of "+src, ef.Formatted, ef.Type+": "+ef.Msg)
		if ef.Msg == "" {
			t.Errorf("SyntaxError Msg for %q is empty", src)
		}
		wantEqual(t, "InterpreterID", ef.InterpreterID, it.ID())
	}
	wantEqual(t, "ran", global(t, it, "ran"), nil)
	mustExec(t, it, "ok = true")
	wantEqual(t, "ok", global(t, it, "ok"), true)
}

// TestExecTableError: an error value {type=..., msg=...} is a typed error,
// the analogue of raising a Python exception class.
func TestExecTableError(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	err := it.Exec(`error({type = "ValueError", msg = "spam"})`)
	ef := execFailed(t, "table error", err)
	wantEqual(t, "Type", ef.Type, "ValueError")
	wantEqual(t, "Msg", ef.Msg, "spam")
	wantEqual(t, "Formatted", ef.Formatted, "ValueError: spam")
	wantEqual(t, "Error()", err.Error(), "ValueError: spam\n\nUncaught in the interpreter:\n\n"+ef.Errdisplay)
	// The same from a called function.
	_, err = it.Call(`function(t, m) error({type = t, msg = m}) end`, "KeyError", "eggs")
	ef = execFailed(t, "table error from Call", err)
	wantEqual(t, "Type", ef.Type, "KeyError")
	wantEqual(t, "Msg", ef.Msg, "eggs")
}

// TestExecSystemExit: os.exit ends the call, not the worker process.
func TestExecSystemExit(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	for _, opts := range [][]interpreters.Option{nil, {interpreters.WithStdlib()}} {
		it := create(t, rt, opts...)
		p := pid(t, it)
		mustExec(t, it, "before = 1")
		for _, tc := range []struct{ src, msg string }{
			{"os.exit(3)", "3"},
			{"os.exit()", "0"},
			{"os.exit(0)", "0"},
			{"after = 1; os.exit(42); never = 1", "42"},
		} {
			ef := execFailed(t, tc.src, it.Exec(tc.src))
			wantEqual(t, "Type of "+tc.src, ef.Type, "SystemExit")
			wantEqual(t, "Msg of "+tc.src, ef.Msg, tc.msg)
			wantEqual(t, "Formatted of "+tc.src, ef.Formatted, "SystemExit: "+tc.msg)
		}
		_, err := it.Call("function() os.exit(5) end")
		ef := execFailed(t, "os.exit in Call", err)
		wantEqual(t, "Type", ef.Type, "SystemExit")
		wantEqual(t, "Msg", ef.Msg, "5")

		if got := pid(t, it); got != p {
			t.Errorf("os.exit replaced the worker: pid %d, was %d", got, p)
		}
		if !alive(p) {
			t.Errorf("os.exit ended worker process %d", p)
		}
		wantEqual(t, "before", global(t, it, "before"), int64(1))
		wantEqual(t, "after", global(t, it, "after"), int64(1))
		wantEqual(t, "never", global(t, it, "never"), nil)
	}
}

// TestOutput: print and io.write reach the interpreter's writer in order,
// all of it before the call returns.
func TestOutput(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))

	mustExec(t, it, `print("a", 1, nil, true, 2.5)`)
	wantEqual(t, "print with several arguments", out.String(), "a\t1\tnil\ttrue\t2.5\n")
	out.Reset()

	mustExec(t, it, `print() io.write("x", 1, "y") print("z") io.write("\n")`)
	wantEqual(t, "print and io.write interleaved", out.String(), "\nx1yz\n\n")
	out.Reset()

	// Many lines, checked the moment Exec returns.
	mustExec(t, it, `for i = 1, 1000 do print("line", i) end io.write("end")`)
	var want strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&want, "line\t%d\n", i)
	}
	want.WriteString("end")
	if got := out.String(); got != want.String() {
		t.Errorf("1000 printed lines: got %d bytes, want %d; output incomplete or out of order when Exec returned", len(got), want.Len())
	}
	out.Reset()

	// A large single write.
	mustExec(t, it, `io.write(string.rep("0123456789", 10000))`)
	if got := out.String(); got != strings.Repeat("0123456789", 10000) {
		t.Errorf("100000-byte io.write: got %d bytes", len(got))
	}
	out.Reset()

	// Output of Call, and output before an error.
	if got := mustCall(t, it, `function(s) print(s) return #s end`, "called"); got != int64(6) {
		t.Errorf("Call result = %#v", got)
	}
	wantEqual(t, "output of Call", out.String(), "called\n")
	out.Reset()
	if err := it.Exec(`print("before") error("after", 0)`); err == nil {
		t.Fatal("error() did not fail Exec")
	}
	wantEqual(t, "output before an error", out.String(), "before\n")
	out.Reset()

	// A failed Call's output is all there when it returns.
	_, err := it.CallContext(t.Context(), "function() for i = 1, 3 do print(i) end error('stop', 0) end")
	if err == nil {
		t.Fatal("error() did not fail Call")
	}
	wantEqual(t, "output of a failed Call", out.String(), "1\n2\n3\n")
}

// TestOutputPerInterpreter: each interpreter writes to its own writer.
func TestOutputPerInterpreter(t *testing.T) {
	t.Parallel()
	var shared syncBuffer
	rt := newRuntime(t, interpreters.WithStdout(&shared))
	var outA, outB syncBuffer
	a := create(t, rt, interpreters.WithStdout(&outA))
	b := create(t, rt, interpreters.WithStdout(&outB))
	c := create(t, rt) // the runtime's default writer
	mustExec(t, a, `print("from a")`)
	mustExec(t, b, `print("from b")`)
	mustExec(t, c, `print("from c")`)
	wantEqual(t, "a's output", outA.String(), "from a\n")
	wantEqual(t, "b's output", outB.String(), "from b\n")
	wantEqual(t, "the runtime's writer", shared.String(), "from c\n")
}

// TestOutputOrderAcrossNestedCalls: output an interpreter printed before it
// called into another one comes out before that one's, as the script wrote
// it, when both print to the same writer.
func TestOutputOrderAcrossNestedCalls(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	rt := newRuntime(t, interpreters.WithStdout(&out))
	a := create(t, rt)
	b := create(t, rt)
	mustCall(t, a, `function(id)
		local other = require("interpreters").Interpreter(id)
		print("A")
		other:exec('print("B")')
		io.write("C\n")
		other:call('function() io.write("D\\n") end')
		print("E")
	end`, b.ID())
	wantEqual(t, "the output of both, in order", out.String(), "A\nB\nC\nD\nE\n")
}
