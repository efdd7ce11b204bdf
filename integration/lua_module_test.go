package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// The tests below drive the Lua-side module, require("interpreters"),
// following the Lua-relevant cases of CPython's test_api.py and
// test_queues.py.

// luaPrelude defines, in an interpreter, the module as a global and
// catch(f, ...): "ok" and f's results when f succeeds, else the error's
// type, msg and tostring (a string error gives "string").
const luaPrelude = `
interpreters = require("interpreters")
function catch(f, ...)
	local res = {pcall(f, ...)}
	if res[1] then
		res[1] = "ok"
		return unpack(res)
	end
	local e = res[2]
	if type(e) == "table" then
		return e.type, e.msg, tostring(e)
	end
	return "string", tostring(e), tostring(e)
end
`

// luaInterp creates an interpreter with luaPrelude run in it.
func luaInterp(t *testing.T, rt *interpreters.Runtime, opts ...interpreters.Option) *interpreters.Interpreter {
	t.Helper()
	it := create(t, rt, opts...)
	mustExec(t, it, luaPrelude)
	return it
}

// luaErr is an error table raised by the module, as catch returns it.
type luaErr struct{ typ, msg, str string }

// catchIn runs body, a Lua function expression, under catch in it and
// returns what catch returned: "ok" and results, or an error's parts.
func catchIn(t *testing.T, it *interpreters.Interpreter, body string, args ...any) (string, []any) {
	t.Helper()
	res := mustCall(t, it, "function(...) return catch("+body+", ...) end", args...)
	switch r := res.(type) {
	case string:
		return r, nil
	case interpreters.Tuple:
		s, ok := r[0].(string)
		if !ok {
			t.Fatalf("catch returned %#v", res)
		}
		return s, r[1:]
	}
	t.Fatalf("catch returned %#v", res)
	return "", nil
}

// wantLuaErr runs body and checks that it raised an error table of type
// typ whose message contains msgPart, and whose tostring is
// "typ: msg".
func wantLuaErr(t *testing.T, it *interpreters.Interpreter, what, body, typ, msgPart string, args ...any) luaErr {
	t.Helper()
	got, rest := catchIn(t, it, body, args...)
	if got == "ok" {
		t.Errorf("%s: no error, want %s", what, typ)
		return luaErr{}
	}
	if got != typ {
		t.Errorf("%s: error type %q (%v), want %q", what, got, rest, typ)
		return luaErr{}
	}
	e := luaErr{typ: got}
	if len(rest) == 2 {
		e.msg, _ = rest[0].(string)
		e.str, _ = rest[1].(string)
	}
	if !strings.Contains(e.msg, msgPart) {
		t.Errorf("%s: message %q should contain %q", what, e.msg, msgPart)
	}
	if want := typ + ": " + e.msg; e.str != want {
		t.Errorf("%s: tostring(e) = %q, want %q", what, e.str, want)
	}
	return e
}

func wantLuaOK(t *testing.T, it *interpreters.Interpreter, what, body string, args ...any) []any {
	t.Helper()
	got, rest := catchIn(t, it, body, args...)
	if got != "ok" {
		t.Fatalf("%s: %s %v, want success", what, got, rest)
	}
	return rest
}

// TestLuaGetCurrent follows GetCurrentTests: inside an interpreter,
// get_current() is that interpreter, the same handle every time.
func TestLuaGetCurrent(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a := luaInterp(t, rt)
	b := luaInterp(t, rt)
	for _, it := range []*interpreters.Interpreter{a, b} {
		res := mustCall(t, it, `function()
			local cur = interpreters.get_current()
			return cur.id, rawequal(cur, interpreters.get_current()), tostring(cur),
				cur:whence(), cur:is_running(), rawequal(cur, interpreters.Interpreter(cur.id)),
				rawequal(cur, interpreters.get_main())
		end`)
		want := interpreters.Tuple{it.ID(), true, fmt.Sprintf("Interpreter(%d)", it.ID()), "_interpreters module", true, true, false}
		wantEqual(t, fmt.Sprintf("get_current() in %v", it), res, want)
	}
}

// TestLuaGetMain follows GetMainTests: main is ID 0, "runtime init",
// always running, one handle.
func TestLuaGetMain(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	res := mustCall(t, it, `function()
		local main = interpreters.get_main()
		return main.id, main:whence(), main:is_running(), rawequal(main, interpreters.get_main()),
			rawequal(main, interpreters.Interpreter(0)), tostring(main)
	end`)
	wantEqual(t, "get_main()", res, interpreters.Tuple{int64(0), "runtime init", true, true, true, "Interpreter(0)"})
	// Main is the host: not closed, exec'd, called or prepared from Lua.
	for _, op := range []string{
		`function() interpreters.get_main():close() end`,
		`function() interpreters.get_main():exec("x = 1") end`,
		`function() interpreters.get_main():call("print") end`,
		`function() interpreters.get_main():prepare_main({x = 1}) end`,
	} {
		wantLuaErr(t, it, op, op, "InterpreterError", "unrecognized")
	}
}

// TestLuaListAll follows ListAllTests from inside an interpreter: main
// first, then oldest to newest, with the interpreter's own handles.
func TestLuaListAll(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a := luaInterp(t, rt)
	b := create(t, rt)
	listIDs := `function()
		local ids = {}
		local all = interpreters.list_all()
		for i, h in ipairs(all) do ids[i] = h.id end
		return ids, rawequal(all[1], interpreters.get_main()), rawequal(all[2], interpreters.get_current()),
			rawequal(all[3], interpreters.Interpreter(all[3].id))
	end`
	wantEqual(t, "list_all() in a", mustCall(t, a, listIDs),
		interpreters.Tuple{[]any{int64(0), a.ID(), b.ID()}, true, true, true})
	closeInterp(t, b)
	c := create(t, rt)
	res := mustCall(t, a, `function()
		local ids = {}
		for i, h in ipairs(interpreters.list_all()) do ids[i] = h.id end
		return ids
	end`)
	wantEqual(t, "list_all() after closing b and creating c", res, []any{int64(0), a.ID(), c.ID()})
	// The host sees the same list.
	wantList(t, "ListAll in the host", listAll(t, rt), rt.GetMain(), a, c)
}

// TestLuaCreate follows CreateTests.test_in_subinterpreter: an
// interpreter created from Lua belongs to the runtime, is usable from its
// creator and from the host, and outlives its creator.
func TestLuaCreate(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	creator := luaInterp(t, rt)
	res := mustCall(t, creator, `function()
		child = interpreters.create()
		child:exec("made_by = 'creator'")
		local r1, r2 = child:call("function(a, b) return a .. b, made_by end", "x", "y")
		return child.id, child:whence(), child:is_running(), r1, r2,
			rawequal(child, interpreters.Interpreter(child.id))
	end`)
	tu, ok := res.(interpreters.Tuple)
	if !ok || len(tu) != 6 {
		t.Fatalf("result %#v", res)
	}
	childID, ok := tu[0].(int64)
	if !ok || childID <= creator.ID() {
		t.Fatalf("child id %#v, want an int64 above %d", tu[0], creator.ID())
	}
	wantEqual(t, "child whence, running, call results, identity", tu[1:], interpreters.Tuple{"_interpreters module", false, "xy", "creator", true})

	child, err := rt.Lookup(childID)
	if err != nil {
		t.Fatalf("Lookup(%d) of the Lua-made interpreter: %v", childID, err)
	}
	wantEqual(t, "the child's whence in the host", child.Whence(), interpreters.WhenceStdlib)
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), creator, child)
	wantEqual(t, "a global the creator set in the child", global(t, child, "made_by"), "creator")
	closeInterp(t, creator)
	wantList(t, "ListAll after closing the creator", listAll(t, rt), rt.GetMain(), child)
	wantEqual(t, "the child still answers", mustCall(t, child, "string.upper", "alive"), "ALIVE")
}

// TestLuaCreateInherits: an interpreter created from Lua carries its
// creator's limits and writer, so a script cannot shed its limits, or write
// around its writer, by running code in a child.
func TestLuaCreateInherits(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	creator := create(t, rt, interpreters.WithStdout(&out), interpreters.WithOutputLimit(100),
		interpreters.WithCallTimeout(time.Minute), interpreters.WithCPULimit(300*time.Millisecond))
	id := mustCall(t, creator, `function() child = require("interpreters").create() return child.id end`)
	child, err := rt.Lookup(id.(int64))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, child, `print("from the child")`)
	wantEqual(t, "the child's output, in its creator's writer", out.String(), "from the child\n")
	err = child.Exec(`print(string.rep("x", 1000))`)
	wantErr(t, "the child past its creator's output limit", err, interpreters.ErrOutputLimit)
	err = child.Exec(`while true do end`)
	wantErr(t, "the child past its creator's CPU limit", err, interpreters.ErrCPULimit)
}

// TestLuaCreateLimit: Lua code can keep at most the create limit of
// interpreters it created (it and those it created, however deep) alive at
// once; past it create() raises an InterpreterError, and closing one makes
// room again.
func TestLuaCreateLimit(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt, interpreters.WithCreateLimit(3))
	got := mustCall(t, it, `function()
		local made = {}
		for i = 1, 10 do
			local ok, e = pcall(interpreters.create)
			if not ok then return #made, e.type end
			made[#made + 1] = e
		end
		return #made, "no error"
	end`)
	wantEqual(t, "interpreters made before the limit, and the error", got, interpreters.Tuple{int64(3), "InterpreterError"})
	wantEqual(t, "live interpreters", len(listAll(t, rt)), 5) // main, it, and 3
	// The children count against the same family: a grandchild has no room.
	wantLuaErr(t, it, "a grandchild past the limit", `function()
		local child = interpreters.list_all()[3]
		child:exec('require("interpreters").create()')
	end`, "ExecutionFailed", "")
	mustCall(t, it, `function() interpreters.list_all()[3]:close() end`)
	wantEqual(t, "room after a close", mustCall(t, it, `function() return interpreters.create().id > 0 end`), true)
}

// TestLuaInterpreterIDs follows InterpreterObjectTests: Interpreter(id)
// validates its argument as CPython does, and Queue(id) likewise.
func TestLuaInterpreterIDs(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	for _, c := range []struct{ arg, typ string }{
		{`"1"`, "TypeError"},
		{`tostring(interpreters.get_current().id)`, "TypeError"},
		{`""`, "TypeError"},
		{`0.5`, "TypeError"},
		{`nil`, "TypeError"},
		{`{}`, "TypeError"},
		{`true`, "TypeError"},
		{`1/0`, "TypeError"},
		{`-1`, "ValueError"},
		{`1000000`, "InterpreterNotFoundError"},
	} {
		wantLuaErr(t, it, "Interpreter("+c.arg+")", "function() return interpreters.Interpreter("+c.arg+") end", c.typ, "")
	}
	for _, c := range []struct{ arg, typ string }{
		{`"1"`, "TypeError"},
		{`0.5`, "TypeError"},
		{`-1`, "ValueError"},
		{`1000000`, "QueueNotFoundError"},
	} {
		wantLuaErr(t, it, "Queue("+c.arg+")", "function() return interpreters.Queue("+c.arg+") end", c.typ, "")
	}
	// A closed interpreter is not found any more, by ID or by handle.
	other := create(t, rt)
	mustCall(t, it, "function(id) other = interpreters.Interpreter(id) end", other.ID())
	closeInterp(t, other)
	wantLuaErr(t, it, "Interpreter(closed id)", "function(id) return interpreters.Interpreter(id) end", "InterpreterNotFoundError", "", other.ID())
	wantLuaErr(t, it, "is_running of a closed one", "function() return other:is_running() end", "InterpreterNotFoundError", "")
	wantLuaErr(t, it, "exec in a closed one", `function() other:exec("x = 1") end`, "InterpreterNotFoundError", "")
	wantLuaErr(t, it, "close of a closed one", `function() other:close() end`, "InterpreterNotFoundError", "")
	wantEqual(t, "its id and whence stay readable", mustCall(t, it, "function() return other.id, other:whence() end"),
		interpreters.Tuple{other.ID(), "_interpreters module"})
}

// TestLuaArgumentTypes: a handle method given the wrong kind of argument,
// or called with a dot instead of a colon, raises a typed TypeError, as
// CPython raises TypeError, never a bare string.
func TestLuaArgumentTypes(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	mustExec(t, it, `other = interpreters.create() q = interpreters.create_queue(0)`)
	for _, c := range []struct{ name, src string }{
		{"exec of a table", `other:exec({})`},
		{"exec of a number", `other:exec(42)`},
		{"call of a function value", `other:call(function() end)`},
		{"call with no function", `other:call()`},
		{"prepare_main of a string", `other:prepare_main("x")`},
		{"a method called with a dot", `other.exec("x = 1")`},
		{"an interpreter method on a queue", `other.is_running(q)`},
		{"a queue method called with a dot", `q.put(1)`},
		{"a queue method on an interpreter", `q.get(other)`},
	} {
		wantLuaErr(t, it, c.name, "function() "+c.src+" end", "TypeError", "")
	}
	wantEqual(t, "a key that is no name", mustCall(t, it, "function() return other[1] == nil and q[true] == nil end"), true)
}

// TestLuaCloseSibling follows TestInterpreterClose.test_from_sibling.
func TestLuaCloseSibling(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	interp1 := luaInterp(t, rt)
	interp2 := create(t, rt)
	p2 := pid(t, interp2)
	mustCall(t, interp1, `function(id2)
		local interp2 = interpreters.Interpreter(id2)
		interp2:close()
		local interp3 = interpreters.create()
		interp3:close()
	end`, interp2.ID())
	wantList(t, "ListAll after the sibling closed another", listAll(t, rt), rt.GetMain(), interp1)
	wantNotFound(t, "Exec in the interpreter closed from Lua", interp2.Exec("x = 1"))
	waitGone(t, p2)
}

// TestLuaCloseSelf follows TestInterpreterClose.test_from_current: an
// interpreter cannot close itself, and stays.
func TestLuaCloseSelf(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	wantLuaErr(t, it, "get_current():close()", "function() interpreters.get_current():close() end", "InterpreterError", "")
	wantLuaErr(t, it, "Interpreter(own id):close()", "function(id) interpreters.Interpreter(id):close() end", "InterpreterError", "", it.ID())
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), it)
	mustExec(t, it, "still = 'here'")
	wantEqual(t, "the interpreter still works", global(t, it, "still"), "here")
}

// TestLuaSiblingRunning: a sibling that is running refuses exec, call,
// prepare_main and close from Lua with InterpreterError "already
// running", and reports is_running.
func TestLuaSiblingRunning(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a := luaInterp(t, rt)
	b := create(t, rt)
	gate := qNew(t, rt, 0)
	th := b.CallInThread("function(q) return q:get() end", gate)
	waitRunning(t, b, th.Done())
	wantEqual(t, "is_running of the busy sibling", mustCall(t, a, "function(id) return interpreters.Interpreter(id):is_running() end", b.ID()), true)
	for _, op := range []string{
		`function(id) interpreters.Interpreter(id):exec("x = 1") end`,
		`function(id) interpreters.Interpreter(id):call("tostring", 1) end`,
		`function(id) interpreters.Interpreter(id):prepare_main({x = 1}) end`,
		`function(id) interpreters.Interpreter(id):close() end`,
	} {
		wantLuaErr(t, a, op, op, "InterpreterError", "already running", b.ID())
	}
	qPut(t, gate, "go")
	v, err := waitThread(t, th)
	if err != nil {
		t.Fatalf("the sibling's call: %v", err)
	}
	wantEqual(t, "the sibling's call result", v, "go")
	wantEqual(t, "is_running afterwards", mustCall(t, a, "function(id) return interpreters.Interpreter(id):is_running() end", b.ID()), false)
	wantList(t, "ListAll (the refused close closed nothing)", listAll(t, rt), rt.GetMain(), a, b)
}

// TestLuaSiblingCalls: exec, call (arguments and results in the fallback
// tier, several results), prepare_main (strict tier, all or nothing) on a
// sibling from Lua; failures come back as ExecutionFailed tables.
func TestLuaSiblingCalls(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a := luaInterp(t, rt)
	b := create(t, rt)
	q := qNew(t, rt, 0)
	if err := a.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Fatal(err)
	}
	res := mustCall(t, a, `function(id)
		local b = interpreters.Interpreter(id)
		b:prepare_main({x = 40, s = "str", qq = q, flag = true})
		b:exec("y = x + 2; qq:put(s)")
		local sum, prod, tbl = b:call("function(t, k) return t[1] + t[2], t[1] * t[2], {k = k, list = {k, k}} end", {3, 4}, "kk")
		local none = {b:call("function() end")}
		local got_q = b:call("function() return qq end")
		return sum, prod, tbl, #none, rawequal(got_q, q), b:call("function() return y, flag end")
	end`, b.ID())
	wantEqual(t, "results through a sibling", res, interpreters.Tuple{
		int64(7), int64(12), map[string]any{"k": "kk", "list": []any{"kk", "kk"}}, int64(0), true, int64(42), true,
	})
	wantEqual(t, "the item the sibling put", qGet(t, q), "str")
	wantEqual(t, "globals bound from Lua, seen by the host", mustCall(t, b, "function() return x, s, flag, qq end"),
		interpreters.Tuple{int64(40), "str", true, q})

	// prepare_main is strict and all or nothing.
	for _, v := range []string{`{}`, `{1, 2}`, `function() end`, `{k = "v"}`} {
		op := `function(id) interpreters.Interpreter(id):prepare_main({fresh = 1, bad = ` + v + `}) end`
		wantLuaErr(t, a, "prepare_main with "+v, op, "NotShareableError", "", b.ID())
	}
	wantEqual(t, "nothing was bound", mustCall(t, b, "function() return fresh == nil and bad == nil end"), true)
	// call arguments and results outside the fallback tier.
	wantLuaErr(t, a, "call with a function argument", `function(id) interpreters.Interpreter(id):call("print", print) end`, "NotShareableError", "", b.ID())
	wantLuaErr(t, a, "call returning a function", `function(id) interpreters.Interpreter(id):call("function() return print end") end`, "NotShareableError", "", b.ID())

	// An uncaught error in the sibling is an ExecutionFailed table with
	// the sibling's error in excinfo.
	res = mustCall(t, a, `function(id)
		local b = interpreters.Interpreter(id)
		local ok, e = pcall(b.exec, b, "error({type = 'ValueError', msg = 'spam'})")
		local ok2, e2 = pcall(b.call, b, "function() error('plain', 0) end")
		local ok3, e3 = pcall(b.exec, b, "this is not lua")
		return ok, e.type, e.excinfo.type, e.excinfo.msg, e.excinfo.formatted, type(e.excinfo.errdisplay),
			ok2, e2.type, e2.excinfo.type, e2.excinfo.msg, tostring(e2):find("ExecutionFailed: ", 1, true) == 1,
			ok3, e3.type, e3.excinfo.type
	end`, b.ID())
	wantEqual(t, "errors of a sibling's code", res, interpreters.Tuple{
		false, "ExecutionFailed", "ValueError", "spam", "ValueError: spam", "string",
		false, "ExecutionFailed", "LuaError", "plain", true,
		false, "ExecutionFailed", "SyntaxError",
	})
	wantEqual(t, "the sibling stays usable", mustCall(t, b, "function() return y end"), int64(42))
}

// TestLuaErrorsAreTables: the module's errors are tables with type and msg
// and a __tostring; uncaught, they fail the host's call with that type.
func TestLuaErrorsAreTables(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	res := mustCall(t, it, `function()
		local ok, e = pcall(interpreters.Queue, 1000000)
		return ok, type(e), e.type, type(e.msg), tostring(e) == e.type .. ": " .. e.msg, getmetatable(e) ~= nil
	end`)
	wantEqual(t, "pcall of Queue(1000000)", res, interpreters.Tuple{false, "table", "QueueNotFoundError", "string", true, true})
	err := it.Exec(`interpreters.Interpreter(-1)`)
	ef := execFailed(t, "an uncaught module error", err)
	wantEqual(t, "its Type", ef.Type, "ValueError")
	if ef.Msg == "" || !strings.HasPrefix(ef.Formatted, "ValueError: ") {
		t.Errorf("Msg %q, Formatted %q: want a message and \"ValueError: ...\"", ef.Msg, ef.Formatted)
	}
	err = it.Exec(`interpreters.create_queue(1):get_nowait()`)
	ef = execFailed(t, "an uncaught QueueEmpty", err)
	wantEqual(t, "its Type", ef.Type, "QueueEmpty")
}

// TestLuaIsShareable: is_shareable is the strict tier.
func TestLuaIsShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	res := mustCall(t, it, `function()
		local q = interpreters.create_queue()
		local yes = {nil, true, false, 0, -10, 1.5, 2^53 - 1, "spam", "", q}
		local no = {{}, {1, 2}, {k = "v"}, print, function() end, coroutine.create(function() end),
			setmetatable({}, {}), interpreters.get_current(), interpreters.UNBOUND}
		local out_yes, out_no = {}, {}
		for i = 1, 10 do out_yes[i] = interpreters.is_shareable(yes[i]) end
		for i = 1, #no do out_no[i] = interpreters.is_shareable(no[i]) end
		return out_yes, out_no
	end`)
	tu, ok := res.(interpreters.Tuple)
	if !ok || len(tu) != 2 {
		t.Fatalf("result %#v", res)
	}
	for i, v := range tu[0].([]any) {
		if v != true {
			t.Errorf("is_shareable(shareable value #%d) = %v, want true", i+1, v)
		}
	}
	for i, v := range tu[1].([]any) {
		if v != false {
			t.Errorf("is_shareable(unshareable value #%d) = %v, want false", i+1, v)
		}
	}
}

// TestLuaQueueOps: the queue handle's methods from Lua, as test_queues.py
// uses them from a subinterpreter.
func TestLuaQueueOps(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	res := mustCall(t, it, `function()
		local out = {}
		local function add(v) out[#out + 1] = v end
		local q = interpreters.create_queue(3)
		add(type(q.id)); add(q:maxsize()); add(tostring(q) == "Queue(" .. q.id .. ")")
		add(rawequal(interpreters.Queue(q.id), q))
		add(q:empty()); add(q:full()); add(q:qsize())
		q:put(1); q:put_nowait("two"); q:put({3})
		add(q:qsize()); add(q:full()); add(q:empty())
		add(q:get()); add(q:get_nowait()); add(q:get({timeout = 1})[1])
		add(q:empty())
		add(interpreters.create_queue():maxsize())
		add(interpreters.create_queue(0):maxsize())
		add(interpreters.create_queue(-10):maxsize())
		add(interpreters.create_queue(-10):full())
		return out
	end`)
	wantEqual(t, "queue ops from Lua", res, []any{
		"number", int64(3), true, true,
		true, false, int64(0),
		int64(3), true, false,
		int64(1), "two", int64(3),
		true,
		int64(0), int64(0), int64(-10), false,
	})

	mustExec(t, it, `full = interpreters.create_queue(1); full:put("x"); empty = interpreters.create_queue()`)
	wantLuaErr(t, it, "put_nowait on a full queue", `function() full:put_nowait("y") end`, "QueueFull", "")
	wantLuaErr(t, it, "get_nowait on an empty queue", `function() return empty:get_nowait() end`, "QueueEmpty", "")
	wantLuaErr(t, it, "create_queue('1')", `function() interpreters.create_queue("1") end`, "TypeError", "")
	wantLuaErr(t, it, "create_queue(1.5)", `function() interpreters.create_queue(1.5) end`, "TypeError", "")
	wantLuaErr(t, it, "put with a bad unbounditems", `function() empty:put(1, {unbounditems = "remove"}) end`, "ValueError", "")
	wantLuaErr(t, it, "get with a negative timeout", `function() empty:get({timeout = -1}) end`, "ValueError", "")
	wantEqual(t, "the refused puts left the queues as they were", mustCall(t, it, "function() return full:qsize(), empty:qsize() end"), interpreters.Tuple{int64(1), int64(0)})

	// Timeouts, measured by the host.
	began := time.Now()
	wantLuaErr(t, it, "get with a timeout on an empty queue", `function() return empty:get({timeout = 0.2}) end`, "QueueEmpty", "")
	if d := time.Since(began); d < 150*time.Millisecond || d > bounded {
		t.Errorf("get({timeout = 0.2}) failed after %v", d)
	}
	began = time.Now()
	wantLuaErr(t, it, "put with a timeout on a full queue", `function() full:put("y", {timeout = 0.2}) end`, "QueueFull", "")
	if d := time.Since(began); d < 150*time.Millisecond || d > bounded {
		t.Errorf("put({timeout = 0.2}) failed after %v", d)
	}
	wantLuaErr(t, it, "get with timeout 0 on an empty queue", `function() return empty:get({timeout = 0}) end`, "QueueEmpty", "")
	wantLuaErr(t, it, "put with timeout 0 on a full queue", `function() full:put("y", {timeout = 0}) end`, "QueueFull", "")
	wantEqual(t, "timeout 0 when there is no need to wait", mustCall(t, it, `function()
		empty:put("now", {timeout = 0})
		return empty:get({timeout = 0})
	end`), "now")

	// id is read-only, on queues and interpreters (test_id_readonly).
	wantEqual(t, "assigning to id", mustCall(t, it, `function()
		local q, cur = interpreters.create_queue(), interpreters.get_current()
		local qid, iid = q.id, cur.id
		local ok1 = pcall(function() q.id = 1000000 end)
		local ok2 = pcall(function() cur.id = 1000000 end)
		return ok1, ok2, q.id == qid, cur.id == iid
	end`), interpreters.Tuple{false, false, true, true})

	// The UNBOUND constants are distinct values with names.
	wantEqual(t, "the UNBOUND constants", mustCall(t, it, `function()
		return tostring(interpreters.UNBOUND), tostring(interpreters.UNBOUND_ERROR), tostring(interpreters.UNBOUND_REMOVE),
			interpreters.UNBOUND ~= interpreters.UNBOUND_ERROR and interpreters.UNBOUND_ERROR ~= interpreters.UNBOUND_REMOVE
	end`), interpreters.Tuple{"UNBOUND", "UNBOUND_ERROR", "UNBOUND_REMOVE", true})
}

// TestLuaQueueToHost: a queue created in Lua and returned to the host is a
// *Queue the host uses, the one LookupQueue gives; items cross both ways.
func TestLuaQueueToHost(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	res := mustCall(t, it, `function()
		lq = interpreters.create_queue(5)
		lq:put("from lua")
		return lq
	end`)
	q, ok := res.(*interpreters.Queue)
	if !ok {
		t.Fatalf("a Lua queue returned to the host is %#v, want *interpreters.Queue", res)
	}
	wantEqual(t, "MaxSize", q.MaxSize(), 5)
	if l, err := rt.LookupQueue(q.ID()); err != nil || l != q {
		t.Errorf("LookupQueue(%d) = %p, %v; want %p", q.ID(), l, err, q)
	}
	if again := mustCall(t, it, "function() return lq end"); again != q {
		t.Errorf("the same Lua queue returned again is %#v, want the same *Queue", again)
	}
	wantEqual(t, "the Lua item", qGet(t, q), "from lua")
	qPut(t, q, map[string]any{"from": "host"})
	wantEqual(t, "the host's item, in Lua", mustCall(t, it, "function() return lq:get().from end"), "host")
	for i := range 5 {
		qPut(t, q, i)
	}
	wantEqual(t, "full, seen from Lua", mustCall(t, it, "function() return lq:full(), lq:qsize() end"), interpreters.Tuple{true, int64(5)})
	wantQueueErr(t, "PutNowait on the full Lua queue", q.PutNowait(5), interpreters.ErrQueueFull)
}

// TestLuaUnboundedPutsInOrder: puts into an unbounded queue do not wait for
// the supervisor's answer, yet every one has landed, in order, when the call
// returns, and a later request in the same call sees them: more puts than
// the worker leaves unanswered at once, into a queue Lua created, one it
// looked up, and one that arrived as an argument.
func TestLuaUnboundedPutsInOrder(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	hostQ, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	res := mustCall(t, it, `function(hq, n)
		local own = interpreters.create_queue()
		local looked = interpreters.Queue(hq.id)
		for i = 1, n do
			hq:put(i)
			own:put(-i)
			looked:put(i * 10)
		end
		return own, own:qsize(), hq:qsize(), own:maxsize()
	end`, hostQ, n)
	tup, ok := res.(interpreters.Tuple)
	if !ok || len(tup) != 4 {
		t.Fatalf("the call returned %#v", res)
	}
	own, ok := tup[0].(*interpreters.Queue)
	if !ok {
		t.Fatalf("the Lua queue came back as %#v", tup[0])
	}
	wantEqual(t, "qsize of Lua's own queue, seen in the same call", tup[1], int64(n))
	wantEqual(t, "qsize of the host's queue, seen in the same call", tup[2], int64(2*n))
	wantEqual(t, "maxsize of Lua's own queue", tup[3], int64(0))
	for i := 1; i <= n; i++ {
		if v, err := own.GetNowait(); err != nil || v != int64(-i) {
			t.Fatalf("item %d of Lua's queue: %#v, %v", i, v, err)
		}
	}
	for i := 1; i <= n; i++ {
		for _, want := range []int64{int64(i), int64(i * 10)} {
			if v, err := hostQ.GetNowait(); err != nil || v != want {
				t.Fatalf("item of round %d of the host's queue: %#v, %v; want %d", i, v, err, want)
			}
		}
	}
	if _, err := hostQ.GetNowait(); !errors.Is(err, interpreters.ErrQueueEmpty) {
		t.Errorf("the host's queue after draining: %v, want ErrQueueEmpty", err)
	}
}

// TestLuaQueueUnboundItems: an interpreter getting items whose interpreter
// is gone sees UNBOUND, or an ItemInterpreterDestroyed error.
func TestLuaQueueUnboundItems(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	getter := luaInterp(t, rt)
	putter := create(t, rt)
	q := qNew(t, rt, 0)
	mustCall(t, putter, `function(q)
		local interpreters = require("interpreters")
		q:put("replace me")
		q:put("fail me", {unbounditems = interpreters.UNBOUND_ERROR})
		q:put("drop me", {unbounditems = interpreters.UNBOUND_REMOVE})
		q:put("me too", {unbounditems = interpreters.UNBOUND})
	end`, q)
	closeInterp(t, putter)
	res := mustCall(t, getter, `function(q)
		local a = q:get()
		local ok, e = pcall(q.get, q)
		local c = q:get_nowait()
		return rawequal(a, interpreters.UNBOUND), ok, e.type, rawequal(c, interpreters.UNBOUND), q:qsize()
	end`, q)
	wantEqual(t, "unbound items in Lua", res, interpreters.Tuple{true, false, "ItemInterpreterDestroyed", true, int64(0)})
}

// TestLuaQueueGetCancelled: cancelling the host's ExecContext while the
// Lua code waits in q:get() returns promptly with context.Canceled; the
// interpreter stays usable, with its state, and the abandoned get takes
// no later item.
func TestLuaQueueGetCancelled(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	q := qNew(t, rt, 0)
	if err := it.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Fatal(err)
	}
	p := pid(t, it)
	mustExec(t, it, "before = 'set'")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	op := startExec(ctx, it, "reached = true; got = q:get(); after = true")
	waitRunning(t, it, op.done)
	waitQueueWaiters(t, rt, q, 1) // the get has reached the queue
	if op.finished() {
		t.Fatalf("the exec returned before the cancel: %v", op.err)
	}
	cancel()
	_, err := op.wait(t) // bounded: only a get the cancel never reaches fails here
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ExecContext cancelled in q:get(): %v (%T), want an error matching context.Canceled", err, err)
	}
	if got := pid(t, it); got != p {
		t.Errorf("the worker was replaced (pid %d → %d): the get should have stopped cleanly", p, got)
	}
	wantEqual(t, "state after the cancel", mustCall(t, it, "function() return before, reached, got, after end"),
		interpreters.Tuple{"set", true, nil, nil})
	wantRunning(t, it, false)
	waitQueueWaiters(t, rt, q, 0) // the cancelled get has let go of the queue
	qPut(t, q, "later")
	wantEqual(t, "an item put after the cancel", qGet(t, q), "later")
	// The interpreter's queue handle still works.
	qPut(t, q, "again")
	wantEqual(t, "a get after the cancel", mustCall(t, it, "function() return q:get({timeout = 5}) end"), "again")
}

// TestLuaQueueGetCallTimeout: a CallContext deadline while the Lua code
// waits in q:get() returns DeadlineExceeded and leaves the interpreter
// usable.
func TestLuaQueueGetCallTimeout(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := luaInterp(t, rt)
	q := qNew(t, rt, 0)
	ctx, cancel := contextWithTimeout(200 * time.Millisecond)
	defer cancel()
	_, err := it.CallContext(ctx, "function(q) return q:get() end", q)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CallContext past its deadline in q:get(): %v, want context.DeadlineExceeded", err)
	}
	qPut(t, q, 7)
	wantEqual(t, "a get after the deadline", mustCall(t, it, "function(q) return q:get() end", q), int64(7))
}

// TestLuaBlockedGetWokenByInterpreter: one interpreter's get wakes when a
// sibling puts, with no host in between.
func TestLuaBlockedGetWokenByInterpreter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	waiter := luaInterp(t, rt)
	putter := luaInterp(t, rt)
	q := qNew(t, rt, 0)
	th := waiter.CallInThread("function(q) return q:get({timeout = 10}) end", q)
	waitRunning(t, waiter, th.Done())
	waitQueueWaiters(t, rt, q, 1) // the get waits: the put must wake it
	mustCall(t, putter, `function(q) q:put({hello = "sibling"}) end`, q)
	v, err := waitThread(t, th)
	if err != nil {
		t.Fatalf("the waiting get: %v", err)
	}
	wantEqual(t, "what the waiter got", v, map[string]any{"hello": "sibling"})
}

// TestLuaGettersRaceTimeouts: interpreters wait in q:get with timeouts so
// short that puts and timeouts keep meeting, while the host puts items at
// an uneven pace; every item is taken exactly once, by a Lua get or by the
// host draining the queue at the end.
func TestLuaGettersRaceTimeouts(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q := qNew(t, rt, 0)
	const getters, items = 4, 600
	type result struct {
		got []int64
		err error
	}
	results := make(chan result, getters)
	stop, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	for g := 0; g < getters; g++ {
		it := luaInterp(t, rt)
		go func() {
			res, err := it.Call(`function(q, stop)
				local got = {}
				while stop:empty() do
					local ok, v = pcall(q.get, q, {timeout = 0.0005})
					if ok then
						got[#got + 1] = v
					elseif type(v) ~= "table" or v.type ~= "QueueEmpty" then
						error(v)
					end
				end
				return got
			end`, q, stop)
			r := result{err: err}
			if list, ok := res.([]any); ok {
				for _, v := range list {
					r.got = append(r.got, v.(int64))
				}
			}
			results <- r
		}()
	}
	for i := 0; i < items; i++ {
		qPut(t, q, int64(i))
		if i%7 == 0 {
			time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
		}
	}
	// What the getters have not taken by the stop is drained below.
	qPut(t, stop, true)
	seen := make(map[int64]int)
	for g := 0; g < getters; g++ {
		r := <-results
		if r.err != nil {
			t.Fatalf("a getter failed: %v", r.err)
		}
		for _, v := range r.got {
			seen[v]++
		}
	}
	for {
		v, err := q.GetNowait()
		if err != nil {
			break
		}
		seen[v.(int64)]++
	}
	for i := int64(0); i < items; i++ {
		if seen[i] != 1 {
			t.Errorf("item %d was taken %d times", i, seen[i])
		}
	}
	if len(seen) != items {
		t.Errorf("%d distinct items taken, want %d", len(seen), items)
	}
}
