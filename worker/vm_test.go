package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// outBuf collects a VM's output. The VM writes on the goroutine running
// the call, which is the test's own, but a mutex keeps -race quiet should
// a test read it from elsewhere.
type outBuf struct {
	mu sync.Mutex
	b  []byte
}

func (o *outBuf) write(p []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b = append(o.b, p...)
	return nil
}

func (o *outBuf) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := string(o.b)
	o.b = nil
	return s
}

func newVM(t testing.TB, cfg VMConfig) (*VM, *outBuf) {
	t.Helper()
	out := &outBuf{}
	if cfg.Output == nil {
		cfg.Output = out.write
	}
	vm := NewVM(cfg)
	t.Cleanup(vm.Close)
	return vm, out
}

// checkEmpty fails when an operation left values on the Lua stack.
func checkEmpty(t testing.TB, vm *VM) {
	t.Helper()
	if n := vm.L().GetTop(); n != 0 {
		t.Fatalf("the Lua stack holds %d values after the operation", n)
	}
}

// short keeps generated sources out of failure messages.
func short(src string) string {
	if len(src) > 80 {
		return src[:77] + "..."
	}
	return src
}

func mustExec(t testing.TB, vm *VM, src string) {
	t.Helper()
	if err := vm.Exec(context.Background(), src); err != nil {
		t.Fatalf("Exec(%q): %v", short(src), err)
	}
	checkEmpty(t, vm)
}

// execFails runs src, which must fail with a *protocol.Error.
func execFails(t testing.TB, vm *VM, src string) *protocol.Error {
	t.Helper()
	err := vm.Exec(context.Background(), src)
	checkEmpty(t, vm)
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("Exec(%q) = %v, want a *protocol.Error", short(src), err)
	}
	return pe
}

func failed(t testing.TB, err error) *protocol.Error {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *protocol.Error", err, err)
	}
	return pe
}

func wantFailure(t testing.TB, pe *protocol.Error, typ, msg string) {
	t.Helper()
	if pe.Code != protocol.CodeExecutionFailed || pe.Type != typ || pe.Msg != msg || pe.Formatted != typ+": "+msg {
		t.Fatalf("got %+v, want execution_failed %s: %q", pe, typ, msg)
	}
}

// call runs Call with Go arguments and returns the decoded results.
func call(t testing.TB, vm *VM, ctx context.Context, fn string, args ...any) ([]any, error) {
	t.Helper()
	var c protocol.Codec
	b, err := c.Marshal(protocol.Tuple(args), protocol.Fallback)
	if err != nil {
		t.Fatalf("marshal args: %v", err)
	}
	res, err := vm.Call(ctx, fn, b)
	checkEmpty(t, vm)
	if err != nil {
		return nil, err
	}
	v, err := c.Unmarshal(res)
	if err != nil {
		t.Fatalf("unmarshal results: %v", err)
	}
	return v.([]any), nil
}

func mustCall(t testing.TB, vm *VM, fn string, args ...any) []any {
	t.Helper()
	res, err := call(t, vm, context.Background(), fn, args...)
	if err != nil {
		t.Fatalf("Call(%q): %v", fn, err)
	}
	return res
}

// eval returns the results of a Lua expression list.
func eval(t testing.TB, vm *VM, exprs string) []any {
	t.Helper()
	return mustCall(t, vm, "function() return "+exprs+" end")
}

func wantResults(t testing.TB, got []any, want ...any) {
	t.Helper()
	if want == nil {
		want = []any{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("results %#v, want %#v", got, want)
	}
}

// ---- output ----

func TestPrintAndWrite(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	mustExec(t, vm, `
		local obj = setmetatable({}, {__tostring = function() return "OBJ" end})
		print("a", 1, nil, true, 2.5, obj)
		io.write("x", 42, " ", 1.5, "\n")
		print()
		io.write("no newline")
		print("after")`)
	want := "a\t1\tnil\ttrue\t2.5\tOBJ\nx42 1.5\n\nno newlineafter\n"
	if got := out.take(); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	pe := execFails(t, vm, `io.write({})`)
	if !strings.Contains(pe.Msg, "string expected") {
		t.Fatalf("io.write({}) error %q", pe.Msg)
	}
}

func TestOutputBeforeErrorIsKept(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	execFails(t, vm, `print("one") io.write("two") error("stop") print("never")`)
	if got := out.take(); got != "one\ntwo" {
		t.Fatalf("output %q", got)
	}
}

func TestPrintInsideToString(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	mustExec(t, vm, `
		local obj = setmetatable({}, {__tostring = function() print("inner") return "outer" end})
		print("x", obj)`)
	if got := out.take(); got != "inner\nx\touter\n" {
		t.Fatalf("output %q", got)
	}
}

func TestNilOutputDiscards(t *testing.T) {
	vm := NewVM(VMConfig{})
	defer vm.Close()
	if err := vm.Exec(context.Background(), `print("x") io.write("y")`); err != nil {
		t.Fatal(err)
	}
}

func TestOutputError(t *testing.T) {
	limit := &protocol.Error{Code: protocol.CodeOutputLimit, Msg: "output limit exceeded"}
	n := 0
	vm, _ := newVM(t, VMConfig{Output: func(p []byte) error {
		n += len(p)
		if n > 4 {
			return limit
		}
		return nil
	}})
	// A limit fails the call with the limit's own error, even when the
	// script catches the Lua error it raised.
	err := vm.Exec(context.Background(), `print("12") local ok = pcall(print, "3456") caught = not ok`)
	checkEmpty(t, vm)
	if err != limit {
		t.Fatalf("Exec = %v, want the Output error itself", err)
	}
	wantResults(t, eval(t, vm, "caught"), true)

	other := errors.New("pipe closed")
	vm2, _ := newVM(t, VMConfig{Output: func([]byte) error { return other }})
	pe := execFails(t, vm2, `print("x")`)
	if pe.Type != "LuaError" || !strings.Contains(pe.Msg, "pipe closed") {
		t.Fatalf("got %+v", pe)
	}
}

// ---- state and errors ----

func TestGlobalsPersist(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	mustExec(t, vm, `counter = 1 function bump() counter = counter + 1 end`)
	mustExec(t, vm, `bump() print(counter)`)
	execFails(t, vm, `counter = 10 error("after the assignment")`)
	mustExec(t, vm, `print(counter)`)
	if got := out.take(); got != "2\n10\n" {
		t.Fatalf("output %q", got)
	}
}

func TestSyntaxError(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	pe := execFails(t, vm, "x = = 1")
	wantFailure(t, pe, "SyntaxError", "<string>:1:5: syntax error near '='")
	if !strings.Contains(pe.Errdisplay, "x = = 1\n      ^") {
		t.Fatalf("Errdisplay %q does not point at the error", pe.Errdisplay)
	}
	pe = execFails(t, vm, "if x then")
	if pe.Type != "SyntaxError" || !strings.Contains(pe.Msg, "<eof>") {
		t.Fatalf("got %+v", pe)
	}
	pe = execFails(t, vm, "goto nowhere")
	if pe.Type != "SyntaxError" {
		t.Fatalf("a compile error: got %+v", pe)
	}
	vm2, _ := newVM(t, VMConfig{ChunkName: "main.lua"})
	wantFailure(t, execFails(t, vm2, "local = 1"), "SyntaxError", "main.lua:1:7: syntax error near '='")
	wantFailure(t, execFails(t, vm2, `error("x")`), "LuaError", "main.lua:1: x")
}

func TestStringErrors(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	wantFailure(t, execFails(t, vm, `error("x")`), "LuaError", "<string>:1: x")
	wantFailure(t, execFails(t, vm, `error("x", 0)`), "LuaError", "x")
	wantFailure(t, execFails(t, vm, "\n\nlocal t = nil\nt.x = 1"), "LuaError",
		"<string>:4: attempt to index a non-table object(nil) with key 'x'")
	wantFailure(t, execFails(t, vm, `error(42)`), "LuaError", "42")
	wantFailure(t, execFails(t, vm, `error(nil)`), "LuaError", "(error object is a nil value)")
	wantFailure(t, execFails(t, vm, `error(true)`), "LuaError", "(error object is a boolean value: true)")
	wantFailure(t, execFails(t, vm, `error(print)`), "LuaError", "(error object is a function value)")
}

func TestTableErrors(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	wantFailure(t, execFails(t, vm, `error({type = "ValueError", msg = "spam"})`), "ValueError", "spam")
	wantFailure(t, execFails(t, vm, `error({type = "KeyError", message = "eggs"})`), "KeyError", "eggs")
	wantFailure(t, execFails(t, vm, `error({code = 7})`), "LuaError", "(error object is a table value)")
	wantFailure(t, execFails(t, vm, `error(setmetatable({}, {__tostring = function() return "custom" end}))`),
		"LuaError", "custom")
	wantFailure(t, execFails(t, vm, `error(setmetatable({type = "E"}, {__tostring = function() return "via tostring" end}))`),
		"E", "via tostring")
	// A __tostring that never returns is cut short, not waited for.
	start := time.Now()
	wantFailure(t, execFails(t, vm, `error(setmetatable({}, {__tostring = function() while true do end end}))`),
		"LuaError", "(error object is a table value)")
	if d := time.Since(start); d > 10*time.Second { // a hang guard
		t.Fatalf("a spinning __tostring held the call for %v", d)
	}
	// One that fails is ignored too.
	wantFailure(t, execFails(t, vm, `error(setmetatable({}, {__tostring = function() error("no") end}))`),
		"LuaError", "(error object is a table value)")
}

func TestTraceback(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	pe := execFails(t, vm, `local function inner()
	error("boom")
end
local function outer()
	inner()
end
outer()`)
	want := "stack traceback:\n\t<string>:2: in function 'inner'\n\t<string>:5: in function 'outer'\n\t<string>:7: in main chunk"
	if pe.Errdisplay != want {
		t.Fatalf("Errdisplay\n%s\nwant\n%s", pe.Errdisplay, want)
	}
	wantFailure(t, pe, "LuaError", "<string>:2: boom")

	// Go frames between Lua frames are shown.
	pe = execFails(t, vm, "table.sort({3, 2, 1}, function(a, b)\n\terror('in comparator')\nend)")
	want = "stack traceback:\n\t<string>:2: in function <<string>:1>\n\t[G]: in function 'sort'\n\t<string>:1: in main chunk"
	if pe.Errdisplay != want {
		t.Fatalf("Errdisplay\n%s\nwant\n%s", pe.Errdisplay, want)
	}

	// Deep stacks are cut in the middle.
	pe = execFails(t, vm, `local function f(n) if n == 0 then error("deep") end f(n - 1) end f(100)`)
	lines := strings.Split(pe.Errdisplay, "\n")
	if len(lines) > 25 || !strings.Contains(pe.Errdisplay, "levels skipped") || lines[len(lines)-1] != "\t<string>:1: in main chunk" {
		t.Fatalf("deep traceback (%d lines):\n%s", len(lines), pe.Errdisplay)
	}

	// Tail calls take one line, however many there were.
	pe = execFails(t, vm, `local function f(n) if n == 0 then error("tail") end return f(n - 1) end f(100000)`)
	if strings.Count(pe.Errdisplay, "\n") > 5 || !strings.Contains(pe.Errdisplay, "tail calls") {
		t.Fatalf("tail-call traceback:\n%s", pe.Errdisplay)
	}

	// Stack overflow: still a LuaError with a traceback.
	pe = execFails(t, vm, `local function r() return 1 + r() end r()`)
	if pe.Type != "LuaError" || !strings.Contains(pe.Msg, "stack overflow") || !strings.HasPrefix(pe.Errdisplay, "stack traceback:") {
		t.Fatalf("got %+v", pe)
	}
	mustExec(t, vm, `x = 1`)
}

func TestGoPanicInBuiltin(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	vm.L().SetGlobal("explode", vm.L().NewFunction(func(*lua.LState) int { panic("kaboom") }))
	pe := execFails(t, vm, `explode()`)
	if pe.Type != "LuaError" || !strings.Contains(pe.Msg, "kaboom") {
		t.Fatalf("got %+v", pe)
	}
	wantResults(t, eval(t, vm, `pcall(explode)`), false, "kaboom")
	mustExec(t, vm, `x = 1`)
}

func TestOsExit(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	for _, c := range []struct{ src, code string }{
		{`os.exit()`, "0"},
		{`os.exit(3)`, "3"},
		{`os.exit(true)`, "0"},
		{`os.exit(false)`, "1"},
		{`os.exit("bye")`, "bye"},
	} {
		pe := execFails(t, vm, `print("before") `+c.src+` print("after")`)
		wantFailure(t, pe, "SystemExit", c.code)
		if got := out.take(); got != "before\n" {
			t.Fatalf("%s: output %q", c.src, got)
		}
	}
	// Like CPython's SystemExit, it can be caught; and the VM goes on.
	wantResults(t, eval(t, vm, `(function() local ok, e = pcall(os.exit, 2) return ok, e.type, e.msg, tostring(e) end)()`),
		false, "SystemExit", "2", "SystemExit: 2")
	_, err := call(t, vm, context.Background(), "os.exit", 5)
	wantFailure(t, failed(t, err), "SystemExit", "5")
}

// ---- sandbox ----

func TestSandbox(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	for _, name := range []string{
		"dofile", "loadfile", "load", "loadstring", "module", "_printregs", "debug", "channel",
		"package.path", "package.cpath", "package.loadlib", "package.loaders", "package.seeall",
		"io.open", "io.popen", "io.read", "io.lines", "io.output", "io.stdout",
		"os.execute", "os.getenv", "os.remove", "os.rename", "os.setenv", "os.tmpname",
	} {
		wantResults(t, eval(t, vm, name+" == nil"), true)
	}
	for _, name := range []string{
		"print", "pcall", "xpcall", "require", "collectgarbage", "io.write",
		"os.time", "os.clock", "os.date", "os.difftime", "os.exit",
		"string.rep", "table.concat", "math.floor", "coroutine.wrap", "unpack", "setmetatable",
	} {
		wantResults(t, eval(t, vm, "type("+name+")"), "function")
	}
	wantResults(t, eval(t, vm, `require("os") == os, require("string") == string, package.loaded._G == _G`), true, true, true)
	pe := execFails(t, vm, `require("nosuch")`)
	if !strings.Contains(pe.Msg, "module 'nosuch' not found") {
		t.Fatalf("require of an unknown module: %+v", pe)
	}
	pe = execFails(t, vm, `require("../etc/passwd")`)
	if !strings.Contains(pe.Msg, "invalid module name") {
		t.Fatalf("require of a path: %+v", pe)
	}
	if pe := execFails(t, vm, `string.dump(print)`); pe.Type != "LuaError" {
		t.Fatalf("string.dump: %+v", pe)
	}
	res := eval(t, vm, `math.huge == 1/0, -math.huge == -1/0, type(collectgarbage("count")), collectgarbage()`)
	wantResults(t, res, true, true, "number", int64(0))
	res = eval(t, vm, `type(os.time()), type(os.date("%Y")), os.difftime(5, 3), os.clock() >= 0`)
	wantResults(t, res, "number", "string", int64(2), true)
}

func TestRandomIsPerVMAndSeedable(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	seq := `(function() math.randomseed(42) local t = {} for i = 1, 5 do t[i] = math.random(1000) end return t end)()`
	a := eval(t, vm, seq)
	vm2, _ := newVM(t, VMConfig{})
	b := eval(t, vm2, seq)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("randomseed(42) gave %v and %v", a, b)
	}
	res := eval(t, vm, `(function()
		for i = 1, 1000 do
			local f, n, m = math.random(), math.random(3), math.random(-2, 2)
			if f < 0 or f >= 1 or n < 1 or n > 3 or m < -2 or m > 2 or n % 1 ~= 0 then return false end
		end
		return true end)()`)
	wantResults(t, res, true)
	if pe := execFails(t, vm, `math.random(0)`); !strings.Contains(pe.Msg, "interval is empty") {
		t.Fatalf("math.random(0): %+v", pe)
	}
	if pe := execFails(t, vm, `math.random(5, 1)`); !strings.Contains(pe.Msg, "interval is empty") {
		t.Fatalf("math.random(5, 1): %+v", pe)
	}
}

// TestStringRepOverMemoryLimit: under a memory limit, a string.rep whose
// result alone would pass it is refused with a MemoryError that pcall
// catches as the soft limit's, and that, uncaught, fails the call with the
// memory limit as its cause; a MemoryError a script raises itself is not
// one.
func TestStringRepOverMemoryLimit(t *testing.T) {
	vm, _ := newVM(t, VMConfig{MemoryLimit: 64 << 20})
	pe := execFails(t, vm, `string.rep("x", 2^31)`)
	if pe.Type != "MemoryError" || pe.Cause != protocol.CodeMemoryLimit || !strings.Contains(pe.Msg, "memory limit") {
		t.Fatalf(`string.rep("x", 2^31) under 64 MiB: %+v, want a MemoryError caused by the memory limit`, pe)
	}
	wantResults(t, eval(t, vm, `(function() local ok, e = pcall(string.rep, "x", 2^31) return ok, e.type end)()`), false, "MemoryError")
	pe = execFails(t, vm, `local ok, e = pcall(string.rep, "x", 2^31) error(e)`)
	if pe.Cause != protocol.CodeMemoryLimit {
		t.Fatalf("the refusal raised again: %+v, want the memory limit as its cause", pe)
	}
	pe = execFails(t, vm, `error({type = "MemoryError", msg = "made up"})`)
	if pe.Type != "MemoryError" || pe.Cause == protocol.CodeMemoryLimit {
		t.Fatalf("a MemoryError the script raised: %+v, want no memory-limit cause", pe)
	}
	wantResults(t, eval(t, vm, `#string.rep("x", 1e6)`), int64(1000000))
}

func TestStringRepCap(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	wantResults(t, eval(t, vm, `("ab"):rep(3), string.rep("x", 0), string.rep("x", -1), #string.rep("x", 1e6)`),
		"ababab", "", "", int64(1000000))
	for _, src := range []string{`string.rep("x", 3e8)`, `("abc"):rep(2^40)`, `string.rep("x", 1/0)`} {
		start := time.Now()
		pe := execFails(t, vm, src)
		if pe.Type != "LuaError" || !strings.Contains(pe.Msg, "more than the limit") {
			t.Fatalf("%s: %+v", src, pe)
		}
		if d := time.Since(start); d > 10*time.Second { // a hang guard
			t.Fatalf("%s took %v", src, d)
		}
	}
}

func TestModules(t *testing.T) {
	loads := 0
	mods := map[string]lua.LGFunction{
		"spam": func(L *lua.LState) int {
			loads++
			m := L.NewTable()
			m.RawSetString("name", L.Get(1))
			m.RawSetString("twice", L.NewFunction(func(L *lua.LState) int {
				L.Push(L.CheckNumber(1) * 2)
				return 1
			}))
			L.Push(m)
			return 1
		},
		"empty": func(L *lua.LState) int { return 0 },
		"broken": func(L *lua.LState) int {
			L.RaiseError("cannot load")
			return 0
		},
	}
	vm, _ := newVM(t, VMConfig{Modules: mods})
	res := eval(t, vm, `require("spam").name, require("spam") == require("spam"), require("spam").twice(21), require("empty")`)
	wantResults(t, res, "spam", true, int64(42), true)
	if loads != 1 {
		t.Fatalf("the loader ran %d times", loads)
	}
	for range 2 { // a failed load can be retried, and fails again
		if pe := execFails(t, vm, `require("broken")`); !strings.Contains(pe.Msg, "cannot load") {
			t.Fatalf("require(broken): %+v", pe)
		}
	}
	// Call paths fall back to require.
	wantResults(t, mustCall(t, vm, "spam.twice", 4), int64(8))
	_, err := call(t, vm, context.Background(), "nosuchmodule.fn")
	if pe := failed(t, err); pe.Type != "TypeError" {
		t.Fatalf("Call of a missing module: %+v", pe)
	}
	_, err = call(t, vm, context.Background(), "broken.fn")
	if pe := failed(t, err); pe.Type != "LuaError" || !strings.Contains(pe.Msg, "cannot load") {
		t.Fatalf("Call of a module that fails to load: %+v", pe)
	}
}

func TestStdlib(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "filemod.lua"), []byte(`return {answer = 42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	mods := map[string]lua.LGFunction{"pre": func(L *lua.LState) int {
		L.Push(lua.LString("preloaded " + L.CheckString(1)))
		return 1
	}}
	vm, out := newVM(t, VMConfig{Stdlib: true, Modules: mods})
	for _, name := range []string{"dofile", "loadfile", "load", "loadstring", "io.open", "os.getenv", "os.execute", "debug.traceback", "require"} {
		wantResults(t, eval(t, vm, "type("+name+")"), "function")
	}
	mustExec(t, vm, `package.path = "`+filepath.ToSlash(dir)+`/?.lua"`)
	wantResults(t, eval(t, vm, `require("filemod").answer, require("pre")`), int64(42), "preloaded pre")
	_, err := call(t, vm, context.Background(), "filemod.answer")
	if pe := failed(t, err); pe.Type != "TypeError" {
		t.Fatalf("Call of a number: %+v", pe)
	}
	mustExec(t, vm, `print("p") io.write("w", 1) io.stdout:write("s"):write("t\n")`)
	if got := out.take(); got != "p\nw1st\n" {
		t.Fatalf("output %q", got)
	}
	wantFailure(t, execFails(t, vm, `os.exit(4)`), "SystemExit", "4")
	wantResults(t, eval(t, vm, `loadstring("return 1 + 1")()`), int64(2))
	wantResults(t, eval(t, vm, `(function()
		local parts, i = {"return ", "1 + ", "2"}, 0
		return load(function() i = i + 1 return parts[i] end)() end)()`), int64(3))
	wantResults(t, eval(t, vm, `load(function() return nil end, "=empty")()`))
	res := eval(t, vm, `loadstring("x = = 1")`)
	if res[0] != nil || !strings.Contains(res[1].(string), "syntax error") {
		t.Fatalf("loadstring of bad syntax: %#v", res)
	}
	wantResults(t, eval(t, vm, `io.stdout:flush() == io.stdout`), true)
	deep := strings.Repeat("{", 300) + strings.Repeat("}", 300)
	res = eval(t, vm, `loadstring("return `+deep+`")`)
	if res[0] != nil || !strings.Contains(res[1].(string), "too many syntax levels") {
		t.Fatalf("loadstring of deep nesting: %#v", res)
	}
	// The upvalue fix is installed here too.
	wantResults(t, eval(t, vm, `(function()
		local count = 0
		local function bump() count = count + 1 end
		for i = 1, 4 do bump() pcall(error, "x") end
		return count end)()`), int64(4))
}

// ---- upvalues after errors (gopher-lua issue 448) ----

// clobber is Lua that reuses many registers, so that a closure left
// pointing at a dead frame's registers reads garbage.
const clobber = `
local function clobber(a, b, c, d, e) local f, g, h = 1, 2, 3 return a + b + c + d + e + f + g + h end
for i = 1, 10 do clobber(i, i, i, i, i) end
`

func TestUpvaluesAfterCaughtErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []any
	}{
		{"counter", `
			local count = 0
			local function bump() count = count + 1 end
			for i = 1, 4 do bump() pcall(error, "x") end
			return count`, []any{int64(4)}},
		{"issue script", `
			local a
			local function use_a() return a end
			pcall(function() error("an error") end)
			a = function() return "set later" end
			return use_a()()`, []any{"set later"}},
		{"xpcall escaped closure", `
			local function mk() local x = 42 saved = function() return x end error("boom") end
			local ok, e = xpcall(mk, function(e) return e end)
			` + clobber + `
			return ok, saved()`, []any{false, int64(42)}},
		{"pcall escaped closures", `
			local fs = {}
			for _, v in ipairs({10, 20, 30}) do
				pcall(function() local x = v fs[#fs + 1] = function() return x end error("e") end)
			end
			` + clobber + `
			return fs[1](), fs[2](), fs[3]()`, []any{int64(10), int64(20), int64(30)}},
		{"escaped closures share their upvalue", `
			local get, set
			pcall(function()
				local x = 1
				get = function() return x end
				set = function(v) x = v end
				error("e")
			end)
			` + clobber + `
			set(7)
			return get()`, []any{int64(7)}},
		{"coroutine", `
			local co = coroutine.wrap(function()
				local n = 0
				local function add(k) n = n + k end
				add(1) pcall(error, "x") add(2) coroutine.yield() add(3)
				coroutine.yield(n)
			end)
			co()
			return co()`, []any{int64(6)}},
		{"nested pcall", `
			local n = 0
			local function inc() n = n + 1 end
			local ok1, ok2 = pcall(function()
				inc()
				local ok = pcall(function() inc() error("inner") end)
				inc()
				error("outer")
			end)
			inc()
			return n, ok1`, []any{int64(4), false}},
		{"error after a nested pcall succeeded", `
			local n = 0
			local function inc() n = n + 1 end
			pcall(function()
				pcall(function() return 1 end)
				inc()
				error("x")
			end)
			inc()
			return n`, []any{int64(2)}},
		{"xpcall handler sees live upvalues", `
			local n = 0
			local function inc() n = n + 1 end
			local ok, e = xpcall(function() inc() error("x", 0) end, function(e) inc() return e .. n end)
			inc()
			return n, e`, []any{int64(3), "x2"}},
		{"stack overflow caught", `
			local n = 0
			local function inc() n = n + 1 end
			local function r() return 1 + r() end
			inc()
			local ok, e = pcall(r)
			inc()
			return n, ok, (string.find(e, "stack overflow", 1, true)) ~= nil`, []any{int64(2), false, true}},
		{"loop closures after errors", `
			local fs = {}
			for i = 1, 3 do
				local ok = pcall(function() error(i) end)
				fs[i] = function() return i end
			end
			` + clobber + `
			return fs[1](), fs[2](), fs[3]()`, []any{int64(1), int64(2), int64(3)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vm, _ := newVM(t, VMConfig{})
			wantResults(t, mustCall(t, vm, "function() "+c.src+" end"), c.want...)
		})
	}
}

func TestUpvaluesAfterUncaughtError(t *testing.T) {
	// The top-level call uses the same error path as pcall.
	vm, _ := newVM(t, VMConfig{})
	execFails(t, vm, `local x = 42 saved = function() return x end error("boom")`)
	mustExec(t, vm, clobber)
	wantResults(t, eval(t, vm, "saved()"), int64(42))
	_, err := call(t, vm, context.Background(), `function() local y = 7 saved2 = function() return y end error("boom") end`)
	failed(t, err)
	mustExec(t, vm, clobber)
	wantResults(t, eval(t, vm, "saved2()"), int64(7))
}

func TestPcallResults(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	wantResults(t, eval(t, vm, `pcall(function(a, b) return a + b, "two" end, 1, 2)`), true, int64(3), "two")
	wantResults(t, eval(t, vm, `pcall(error, "msg", 0)`), false, "msg")
	wantResults(t, eval(t, vm, `pcall(function() error("msg") end)`), false, "<string>:1: msg")
	wantResults(t, eval(t, vm, `pcall(42)`), false, "attempt to call a number value")
	wantResults(t, eval(t, vm, `select("#", pcall(function() end))`), int64(1))
	wantResults(t, eval(t, vm, `pcall(setmetatable({}, {__call = function(self, x) return x end}), 5)`), true, int64(5))
	// Error objects come back unchanged.
	wantResults(t, eval(t, vm, `(function() local e = {} local ok, got = pcall(error, e) return rawequal(e, got) end)()`), true)
	wantResults(t, eval(t, vm, `(function() local e = {} local ok, got = xpcall(function() error(e) end, function(x) return x end) return rawequal(e, got) end)()`), true)
	// xpcall: handler result, extra arguments, handler errors.
	wantResults(t, eval(t, vm, `xpcall(function() error("a", 0) end, function(e) return "handled " .. e end)`), false, "handled a")
	wantResults(t, eval(t, vm, `xpcall(function(a, b) return a * b end, print, 6, 7)`), true, int64(42))
	wantResults(t, eval(t, vm, `xpcall(function() error("a") end, function(e) error("b") end)`), false, "error in error handling")
	// Deep nesting of protected calls unwinds cleanly.
	wantResults(t, eval(t, vm, `(function()
		local function nest(n) if n == 0 then error("bottom", 0) end local ok, e = pcall(nest, n - 1) error(e, 0) end
		return pcall(nest, 50) end)()`), false, "bottom")
	if n := len(vm.pstack) + len(vm.liveUV); n != 0 {
		t.Fatalf("protected-call bookkeeping left %d entries", n)
	}
}

func TestProtectedCallFromGo(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	L := vm.L()
	L.SetGlobal("try", L.NewFunction(func(L *lua.LState) int {
		L.Push(L.CheckFunction(1))
		if err := vm.ProtectedCall(L, 0, 0); err != nil {
			L.Push(errorObject(err))
			return 1
		}
		return 0
	}))
	wantResults(t, eval(t, vm, `(function()
		local count = 0
		local function bump() count = count + 1 end
		for i = 1, 4 do bump() try(function() error("x", 0) end) end
		return count, try(function() error("y", 0) end) end)()`), int64(4), "y")

	// An interrupt is not an error Go code gets to catch either.
	returned := false
	L.SetGlobal("spin", L.NewFunction(func(L *lua.LState) int {
		L.Push(L.CheckFunction(1))
		vm.ProtectedCall(L, 0, 0)
		returned = true
		return 0
	}))
	err, _ := execCancelled(t, vm, `spin(function() while true do end end)`)
	if failed(t, err).Code != protocol.CodeCanceled || returned {
		t.Fatalf("got %v; ProtectedCall returned: %v", err, returned)
	}
}

// ---- interrupts ----

func execCancelled(t *testing.T, vm *VM, src string) (error, time.Duration) {
	t.Helper()
	return execCancelledAfter(t, vm, src, nil)
}

// execCancelledAfter is execCancelled that cancels only once reached is
// closed, for a test that must see some of the chunk run first; nil
// means once the call runs at all.
func execCancelledAfter(t *testing.T, vm *VM, src string, reached <-chan struct{}) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- vm.Exec(ctx, src) }()
	if reached != nil {
		select {
		case <-reached:
		case err := <-done:
			t.Fatalf("%s: ended before it was cancelled: %v", src, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the chunk never got there", src)
		}
	}
	// Cancel once the call runs under its interrupt context, so the
	// interrupt stops running Lua rather than the call's start.
	for deadline := time.Now().Add(10 * time.Second); vm.ic.Load() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the call did not start", src)
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not interrupted", src)
	}
	return nil, 0
}

func TestInterrupt(t *testing.T) {
	for _, src := range []string{
		`while true do end`,
		`local x = 0 while true do x = x + 1 end`,
		`while true do pcall(function() while true do end end) end`,
		`while true do xpcall(function() while true do end end, function(e) return e end) end`,
		`while true do pcall(error, "x") end`,
		`local co = coroutine.create(function() while true do end end) coroutine.resume(co) while true do end`,
		`local co = coroutine.wrap(function() while true do end end) co()`,
		`local function f() return f() end f()`,
		`local t = {} for i = 1, 1e9 do t[#t % 100 + 1] = tostring(i) end`,
	} {
		t.Run(src, func(t *testing.T) {
			vm, _ := newVM(t, VMConfig{})
			mustExec(t, vm, `kept = "yes"`)
			err, took := execCancelled(t, vm, src)
			checkEmpty(t, vm)
			if pe := failed(t, err); pe.Code != protocol.CodeCanceled {
				t.Fatalf("got %+v, want canceled", pe)
			}
			// execCancelled bounds it against a hang; the interrupt's
			// speed is measured by benchmarks.
			t.Logf("interrupt took %v", took)
			wantResults(t, eval(t, vm, "kept"), "yes")
		})
	}
}

func TestInterruptCauseAndDeadline(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	cause := &protocol.Error{Code: protocol.CodeMemoryLimit, Msg: "memory limit exceeded"}
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
	if err := vm.Exec(ctx, `while true do end`); err != cause {
		t.Fatalf("Exec = %v, want the cause itself", err)
	}

	ctx, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	_, err := call(t, vm, ctx, `function() while true do end end`)
	if pe := failed(t, err); pe.Code != protocol.CodeDeadlineExceeded || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("got %+v", pe)
	}

	// An expired context runs nothing.
	mustExec(t, vm, `ran = false`)
	if err := vm.Exec(ctx, `ran = true`); failed(t, err).Code != protocol.CodeDeadlineExceeded {
		t.Fatalf("Exec on an expired context: %v", err)
	}
	if _, err := call(t, vm, ctx, `function() ran = true end`); err == nil {
		t.Fatal("Call on an expired context succeeded")
	}
	wantResults(t, eval(t, vm, "ran"), false)
}

func TestCoroutinesAcrossCalls(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	mustExec(t, vm, `
		gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end return "done" end)
		co = coroutine.create(function() for i = 1, 3 do coroutine.yield(i * 10) end end)
		first = gen()`)
	wantResults(t, eval(t, vm, "first, gen(), gen()"), int64(1), int64(2), int64(3))
	wantResults(t, eval(t, vm, "coroutine.resume(co)"), true, int64(10))
	wantResults(t, eval(t, vm, "coroutine.resume(co)"), true, int64(20))
	// Resumed by Go code outside any call, a generator runs without the
	// context of the call that made it.
	if err := vm.L().DoString(`from_go = gen()`); err != nil {
		t.Fatal(err)
	}
	vm.L().SetTop(0)
	wantResults(t, eval(t, vm, "from_go"), "done")
	// A coroutine spinning in a later call is interrupted, and only it dies.
	mustExec(t, vm, `spinner = coroutine.create(function() coroutine.yield() while true do end end) coroutine.resume(spinner)`)
	err, _ := execCancelled(t, vm, `coroutine.resume(spinner)`)
	if failed(t, err).Code != protocol.CodeCanceled {
		t.Fatalf("got %v", err)
	}
	wantResults(t, eval(t, vm, "coroutine.status(spinner), coroutine.resume(co)"), "dead", true, int64(30))
	// A coroutine made outside any call is interruptible too.
	L := vm.L()
	if err := L.DoString(`outside = coroutine.create(function() while true do end end)`); err != nil {
		t.Fatal(err)
	}
	L.SetTop(0)
	err, _ = execCancelled(t, vm, `coroutine.resume(outside)`)
	if failed(t, err).Code != protocol.CodeCanceled {
		t.Fatalf("got %v", err)
	}
}

func TestInterruptCtx(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	ic := newInterruptCtx(parent)
	if ic.Value(key{}) != "v" || ic.Err() != nil {
		t.Fatal("a fresh interrupt context")
	}
	child, cancelChild := context.WithCancel(ic)
	defer cancelChild()
	stopped, cancelStopped := context.WithCancel(ic)
	defer cancelStopped()
	fired := make(chan struct{})
	stop := ic.AfterFunc(func() { close(fired) })
	stop2 := ic.AfterFunc(func() { t.Error("a stopped AfterFunc ran") })
	if !stop2() || stop2() {
		t.Fatal("stop reports whether it stopped f")
	}
	cancel()
	ic.stop(parent.Err())
	ic.stop(errors.New("second"))
	<-fired
	<-child.Done()
	<-stopped.Done()
	if ic.Err() != context.Canceled || child.Err() != context.Canceled || stop() {
		t.Fatalf("after stop: %v %v", ic.Err(), child.Err())
	}
	late := make(chan struct{})
	ic.AfterFunc(func() { close(late) })
	<-late
}

// ---- Call ----

func TestCall(t *testing.T) {
	vm, out := newVM(t, VMConfig{})
	mustExec(t, vm, `
		function add(a, b) return a + b end
		function none() end
		function many() return 1, "two", nil, {3, 4}, {k = "v"} end
		function echo(...) return ... end
		Spam = {}
		function Spam.from_values(a, b) return {a, b} end
		Spam.nested = {deep = {fn = function() return "deep" end}}
		Callable = setmetatable({}, {__call = function(self, x) return x * 3 end})
		function getfunc() return print end
		number = 5`)
	wantResults(t, mustCall(t, vm, "add", 2, 3), int64(5))
	wantResults(t, mustCall(t, vm, "none"))
	wantResults(t, mustCall(t, vm, "many"), int64(1), "two", nil, []any{int64(3), int64(4)}, map[string]any{"k": "v"})
	wantResults(t, mustCall(t, vm, "echo", "a", 1.5, true, nil, []any{}, map[string]any{"x": int64(1)}),
		"a", 1.5, true, nil, []any{}, map[string]any{"x": int64(1)})
	wantResults(t, mustCall(t, vm, "string.upper", "abc"), "ABC")
	wantResults(t, mustCall(t, vm, "Spam.from_values", 1, 2), []any{int64(1), int64(2)})
	wantResults(t, mustCall(t, vm, "Spam.nested.deep.fn"), "deep")
	wantResults(t, mustCall(t, vm, "Callable", 4), int64(12))
	wantResults(t, mustCall(t, vm, "function(a, b) return a + b end", 40, 2), int64(42))
	wantResults(t, mustCall(t, vm, "  function() return 'spaced' end  "), "spaced")
	wantResults(t, mustCall(t, vm, "function() return 'commented' end -- a comment"), "commented")
	wantResults(t, mustCall(t, vm, "Spam['from_values']", "x", "y"), []any{"x", "y"})
	wantResults(t, mustCall(t, vm, "getfunc()", "printed"))
	if got := out.take(); got != "printed\n" {
		t.Fatalf("output %q", got)
	}
	if res, err := vm.Call(context.Background(), "none", nil); err != nil || string(res) != "\x90" {
		t.Fatalf("Call with nil args = %x, %v", res, err)
	}

	for _, fn := range []string{"number", "nosuch", "Spam", "Spam.missing", "number.field", "nil", "true", "1 + 1", "Spam.nested.none.fn"} {
		_, err := call(t, vm, context.Background(), fn)
		pe := failed(t, err)
		if pe.Code != protocol.CodeExecutionFailed || pe.Type != "TypeError" || !strings.Contains(pe.Msg, fn) {
			t.Errorf("Call(%q): %+v, want a TypeError", fn, pe)
		}
	}
	_, err := call(t, vm, context.Background(), "function( return")
	if pe := failed(t, err); pe.Type != "SyntaxError" {
		t.Fatalf("Call of bad syntax: %+v", pe)
	}
	_, err = call(t, vm, context.Background(), "function() error({type = 'ValueError', msg = 'bad'}) end")
	wantFailure(t, failed(t, err), "ValueError", "bad")
	_, err = call(t, vm, context.Background(), "add", "x", 1)
	if pe := failed(t, err); pe.Type != "LuaError" {
		t.Fatalf("Call with bad args: %+v", pe)
	}
	// A result that cannot cross fails after the call ran.
	_, err = call(t, vm, context.Background(), "function() ran = true return function() end end")
	if pe := failed(t, err); pe.Code != protocol.CodeNotShareable {
		t.Fatalf("unshareable result: %+v", pe)
	}
	wantResults(t, eval(t, vm, "ran"), true)
	for _, expr := range []string{"coroutine.create(print)", "setmetatable({}, {})", "{[{}] = 1}"} {
		_, err = call(t, vm, context.Background(), "function() return "+expr+" end")
		if pe := failed(t, err); pe.Code != protocol.CodeNotShareable {
			t.Fatalf("%s: %+v", expr, pe)
		}
	}
	// Malformed arguments are the codec's error.
	if _, err := vm.Call(context.Background(), "add", []byte{0xc1}); failed(t, err).Code != protocol.CodeProtocol {
		t.Fatalf("malformed args: %v", err)
	}
	checkEmpty(t, vm)
}

func TestCallTraceback(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	mustExec(t, vm, "function fail()\n\terror('x')\nend")
	_, err := call(t, vm, context.Background(), "fail")
	pe := failed(t, err)
	if pe.Errdisplay != "stack traceback:\n\t<string>:2: in function 'fail'" {
		t.Fatalf("Errdisplay %q", pe.Errdisplay)
	}
	_, err = call(t, vm, context.Background(), "function() fail() end")
	pe = failed(t, err)
	if pe.Errdisplay != "stack traceback:\n\t<string>:2: in function 'fail'\n\t<string>:1: in function <<string>:1>" {
		t.Fatalf("Errdisplay %q", pe.Errdisplay)
	}
}

// ---- PrepareMain ----

func encodeMap(t testing.TB, kvs ...any) []byte {
	t.Helper()
	var buf strings.Builder
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeMapLen(len(kvs) / 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kvs); i += 2 {
		if err := enc.Encode(kvs[i]); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(kvs[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(buf.String())
}

func TestPrepareMain(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	mustExec(t, vm, `untouched = "old"`)
	err := vm.PrepareMain(encodeMap(t, "a", 1, "b", "two", "_c3", []any{1, 2}, "d", map[string]any{"k": true}, "e", nil, "f", 2.5))
	if err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, vm)
	wantResults(t, eval(t, vm, "a, b, _c3, d, e, f"), int64(1), "two", []any{int64(1), int64(2)}, map[string]any{"k": true}, nil, 2.5)

	for name, b := range map[string][]byte{
		"empty map":     encodeMap(t),
		"reserved word": encodeMap(t, "x", 1, "end", 2),
		"goto":          encodeMap(t, "goto", 1),
		"digit first":   encodeMap(t, "x", 1, "1abc", 2),
		"dotted":        encodeMap(t, "a.b", 1),
		"empty name":    encodeMap(t, "", 1),
		"space":         encodeMap(t, "a b", 1),
		"integer key":   encodeMap(t, 1, 1),
		"not a map":     []byte{0x91, 0x01},
		"nothing":       nil,
		"trailing":      append(encodeMap(t, "x", 1), 0x01),
	} {
		err := vm.PrepareMain(b)
		checkEmpty(t, vm)
		if pe := failed(t, err); pe.Code != protocol.CodeInvalidArgument {
			t.Errorf("%s: %+v, want invalid_argument", name, pe)
		}
	}
	// A value that cannot be decoded fails the whole map too.
	bad := encodeMap(t, "x", 1, "untouched", "new", "y", uint64(1)<<60)
	if err := vm.PrepareMain(bad); err == nil {
		t.Fatal("an integer beyond 2^53 was accepted")
	}
	wantResults(t, eval(t, vm, "untouched, x == 1 and 'x' or 'nothing bound'"), "old", "nothing bound")
}

// ---- compiling ----

func TestCompileGuards(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	for name, src := range map[string]string{
		"tables":    "x = " + strings.Repeat("{", 100000) + strings.Repeat("}", 100000),
		"not":       "x = " + strings.Repeat("not ", 100000) + "true",
		"minus":     "x = " + strings.Repeat("- ", 1000) + "1",
		"parens":    "x = " + strings.Repeat("f(", 1000) + strings.Repeat(")", 1000),
		"blocks":    strings.Repeat("do ", 40000) + strings.Repeat("end ", 40000),
		"functions": strings.Repeat("function f() ", 300) + strings.Repeat("end ", 300),
		"concat":    "x = " + strings.Repeat("'a' .. ", 100000) + "'a'",
		"sum":       "x = " + strings.Repeat("1 + ", 100000) + "1",
		"elseif":    "if x then " + strings.Repeat("elseif x then ", 100000) + "end",
	} {
		start := time.Now()
		pe := execFails(t, vm, src)
		if pe.Type != "SyntaxError" || !strings.Contains(pe.Msg, "too many syntax levels") {
			t.Errorf("%s: %+v", name, pe)
		}
		// A hang guard, not a speed claim: unguarded, the deepest of these
		// crash the compiler or keep it busy for minutes.
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("%s: rejecting took %v", name, d)
		}
	}
	// What C Lua accepts, so do we.
	mustExec(t, vm, "x = "+strings.Repeat("1 + ", 2000)+"1")
	mustExec(t, vm, "s = "+strings.Repeat("'a' .. ", 150)+"'a'")
	mustExec(t, vm, "y = "+strings.Repeat("(", 150)+"1"+strings.Repeat(")", 150))
	mustExec(t, vm, "z = "+strings.Repeat("{", 150)+strings.Repeat("}", 150))
	mustExec(t, vm, "if x == 0 then "+strings.Repeat("elseif x == 1 then ", 1000)+"end")
	mustExec(t, vm, "t = {"+strings.Repeat("1, ", maxListFields)+"}")
	mustExec(t, vm, "v = string"+strings.Repeat(".upper", 1)+"('a')"+strings.Repeat(":lower()", 1000))
	wantResults(t, eval(t, vm, "x, #s, y, #t, v"), int64(2001), int64(151), int64(1), int64(maxListFields), "a")
	// Longer list constructors are miscompiled by gopher-lua, so refused.
	pe := execFails(t, vm, "t = {"+strings.Repeat("1, ", maxListFields+1)+"}")
	if pe.Type != "SyntaxError" || !strings.Contains(pe.Msg, "list items") {
		t.Fatalf("a long table constructor: %+v", pe)
	}

	pe = execFails(t, vm, strings.Repeat(" ", maxSourceSize+1))
	if pe.Type != "SyntaxError" || !strings.Contains(pe.Msg, "too large") {
		t.Fatalf("oversized source: %+v", pe)
	}
}

func TestCompileCache(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	mustExec(t, vm, "n = (n or 0) + 1")
	mustExec(t, vm, "n = (n or 0) + 1")
	mustCall(t, vm, "function() return n end")
	mustCall(t, vm, "function() return n end")
	if got := vm.protos.ll.Len(); got != 2 {
		t.Fatalf("%d cached protos, want 2", got)
	}
	wantResults(t, eval(t, vm, "n"), int64(2))
	for i := range protoCacheSize + 10 {
		mustExec(t, vm, fmt.Sprintf("x = %d", i))
	}
	if got := vm.protos.ll.Len(); got != protoCacheSize || len(vm.protos.items) != protoCacheSize {
		t.Fatalf("the cache holds %d protos, want %d", got, protoCacheSize)
	}
}

func TestClose(t *testing.T) {
	vm := NewVM(VMConfig{})
	vm.Close()
	vm.Close()
	if err := vm.Exec(context.Background(), "x = 1"); err == nil {
		t.Fatal("Exec after Close succeeded")
	}
	if _, err := vm.Call(context.Background(), "print", nil); err == nil {
		t.Fatal("Call after Close succeeded")
	}
	if err := vm.PrepareMain(encodeMap(t, "x", 1)); err == nil {
		t.Fatal("PrepareMain after Close succeeded")
	}
}

// ---- benchmarks ----

const hotLoop = `local x = 0 for i = 1, 200000 do x = x + 1 end`

// BenchmarkHotLoop measures what polling the interrupt context before
// every instruction costs: each iteration runs the same compiled loop once
// with no context and once through Exec, under the per-call interrupt
// context, interleaved so that a noisy machine slows both alike. It reports
// both times and their ratio.
func BenchmarkHotLoop(b *testing.B) {
	vm, _ := newVM(b, VMConfig{})
	L := vm.L()
	p, perr := compileLua(hotLoop, "<string>")
	if perr != nil {
		b.Fatal(perr)
	}
	ctx := context.Background()
	var plain, interrupt time.Duration
	for b.Loop() {
		start := time.Now()
		L.Push(L.NewFunctionFromProto(p))
		if _, err := vm.protect(L, 0, 0, nil, false); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := vm.Exec(ctx, hotLoop); err != nil {
			b.Fatal(err)
		}
		plain += mid.Sub(start)
		interrupt += time.Since(mid)
	}
	n := float64(b.N)
	b.ReportMetric(float64(plain.Nanoseconds())/n, "no-context-ns/op")
	b.ReportMetric(float64(interrupt.Nanoseconds())/n, "interrupt-ns/op")
	b.ReportMetric(float64(interrupt)/float64(plain), "ratio")
}

// BenchmarkHotLoopWithCancel is the same comparison for a plain
// context.WithCancel, the cost the interrupt context avoids.
func BenchmarkHotLoopWithCancel(b *testing.B) {
	vm, _ := newVM(b, VMConfig{})
	L := vm.L()
	p, perr := compileLua(hotLoop, "<string>")
	if perr != nil {
		b.Fatal(perr)
	}
	var plain, withCancel time.Duration
	for b.Loop() {
		start := time.Now()
		L.Push(L.NewFunctionFromProto(p))
		if _, err := vm.protect(L, 0, 0, nil, false); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		L.SetContext(ctx)
		L.Push(L.NewFunctionFromProto(p))
		_, err := vm.protect(L, 0, 0, nil, false)
		L.RemoveContext()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		plain += mid.Sub(start)
		withCancel += time.Since(mid)
	}
	b.ReportMetric(float64(withCancel)/float64(plain), "ratio")
}

func BenchmarkPcall(b *testing.B) {
	vm, _ := newVM(b, VMConfig{})
	mustExec(b, vm, `function bench() for i = 1, 1000 do pcall(error, "x") end end`)
	for b.Loop() {
		if _, err := vm.Call(context.Background(), "bench", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestErrorLevels: error's level puts the position of the function it
// names in front of a string message, and nothing when no function is
// that far up, as in Lua 5.1.
func TestErrorLevels(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	for _, c := range []struct{ src, msg string }{
		{`error("x")`, "<string>:1: x"},
		{`error("x", 0)`, "x"},
		{`local function f() error("x", 2) end
f()`, "<string>:2: x"},
		{`error("x", 1e9)`, "x"},
		{`error(42)`, "42"},
	} {
		if pe := execFails(t, vm, c.src); pe.Msg != c.msg {
			t.Errorf("%s: Msg %q, want %q", c.src, pe.Msg, c.msg)
		}
	}
}

// BenchmarkNewVM measures what building an interpreter's VM allocates (run
// with -benchmem): a worker's sandboxed VM with its modules, beside a
// gopher-lua state with its standard libraries opened, the baseline.
func BenchmarkNewVM(b *testing.B) {
	b.Run("gopher-lua", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			lua.NewState().Close()
		}
	})
	b.Run("worker", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			w := &worker{outBudget: -1}
			w.newVM(false)
			w.vm.Close()
		}
	})
}
