package integration

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

const identity = "function(...) return ... end"

// TestCallForms: fn is a Lua expression evaluated with the globals as
// environment: a global name, a dotted path, or a function literal.
func TestCallForms(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, `
		function add(a, b) return a + b end
		Spam = {}
		function Spam.from_values(...) return {...} end
		function Spam.noop() end
		deep = {er = {still = function(s) return s .. "!" end}}
	`)
	for _, tc := range []struct {
		fn   string
		args []any
		want any
	}{
		{"add", []any{2, 3}, int64(5)},
		{"string.upper", []any{"spam"}, "SPAM"},
		{"string.rep", []any{"ab", 3}, "ababab"},
		{"tostring", []any{12}, "12"},
		{"Spam.from_values", []any{1, 2, 3}, []any{int64(1), int64(2), int64(3)}},
		{"Spam.from_values", nil, []any{}},
		{"Spam.noop", nil, nil},
		{"deep.er.still", []any{"go"}, "go!"},
		{"function(a, b) return a + b end", []any{1, 2}, int64(3)},
		{"  function (s) return #s end  ", []any{"four"}, int64(4)},
		{"function(...) return select('#', ...) end", []any{1, nil, "x"}, int64(3)},
		{"function(a, b, c) return c end", []any{1, nil, "third"}, "third"},
	} {
		got, err := it.Call(tc.fn, tc.args...)
		if err != nil {
			t.Errorf("Call(%q, %v): %v", tc.fn, tc.args, err)
			continue
		}
		wantEqual(t, fmt.Sprintf("Call(%q, %v)", tc.fn, tc.args), got, tc.want)
	}
}

// TestCallGlobals: a function literal runs with the interpreter's globals,
// reading and writing the same table Exec uses.
func TestCallGlobals(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	get := "function(name) return _G[name] end"
	set := "function(name, v) _G[name] = v end"
	wantEqual(t, "spam before", mustCall(t, it, get, "spam"), nil)
	mustExec(t, it, "spam = true")
	wantEqual(t, "spam after Exec", mustCall(t, it, get, "spam"), true)
	mustCall(t, it, set, "spam", 42)
	wantEqual(t, "spam after Call", mustCall(t, it, get, "spam"), int64(42))
	mustExec(t, it, "assert(spam == 42, tostring(spam))")
	mustCall(t, it, "function() plain = 'global' end")
	mustExec(t, it, "assert(plain == 'global')")
}

// TestCallRequire: when the first part of a dotted path is not a global,
// require of it is tried.
func TestCallRequire(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt, interpreters.WithStdlib())
	mustExec(t, it, `
		loads = 0
		package.preload["greeter"] = function()
			loads = loads + 1
			return {hello = function(name) return "hello, " .. name end}
		end
	`)
	wantEqual(t, "greeter.hello", mustCall(t, it, "greeter.hello", "lua"), "hello, lua")
	wantEqual(t, "greeter.hello again", mustCall(t, it, "greeter.hello", "go"), "hello, go")
	wantEqual(t, "module loads", global(t, it, "loads"), int64(1))
	// The interpreters module, in the default sandbox.
	plain := create(t, rt)
	wantEqual(t, "interpreters.is_shareable(1)", mustCall(t, plain, "interpreters.is_shareable", 1), true)
	wantEqual(t, "interpreters.is_shareable({1})", mustCall(t, plain, "interpreters.is_shareable", []any{int64(1)}), false)
}

func TestCallReturns(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	for _, tc := range []struct {
		fn   string
		want any
	}{
		{"function() end", nil},
		{"function() return end", nil},
		{"function() return nil end", nil},
		{"function() return 1 end", int64(1)},
		{"function() return 'one' end", "one"},
		{"function() return 1, 'two' end", interpreters.Tuple{int64(1), "two"}},
		{"function() return 1, nil, 'three' end", interpreters.Tuple{int64(1), nil, "three"}},
		{"function() return {1, 2}, {a = 1} end", interpreters.Tuple{[]any{int64(1), int64(2)}, map[string]any{"a": int64(1)}}},
		{"function() return true, false end", interpreters.Tuple{true, false}},
	} {
		got, err := it.Call(tc.fn)
		if err != nil {
			t.Errorf("Call(%q): %v", tc.fn, err)
			continue
		}
		wantEqual(t, fmt.Sprintf("Call(%q)", tc.fn), got, tc.want)
	}
	// Several results come back as a Tuple, not as another slice type.
	res := mustCall(t, it, "function() return 1, 2 end")
	if _, ok := res.(interpreters.Tuple); !ok {
		t.Errorf("several results came back as %T, want interpreters.Tuple", res)
	}
}

// TestCallArgsCopied: arguments are copies; changes in the target do not
// reach the caller's values.
func TestCallArgsCopied(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	arr := []any{int64(1), int64(2)}
	m := map[string]any{"k": "v"}
	res := mustCall(t, it, "function(a, m) a[1] = 99 m.k = 'changed' m.new = true return a, m end", arr, m)
	wantEqual(t, "the target's view", res, interpreters.Tuple{
		[]any{int64(99), int64(2)},
		map[string]any{"k": "changed", "new": true},
	})
	wantEqual(t, "the caller's slice", arr, []any{int64(1), int64(2)})
	wantEqual(t, "the caller's map", m, map[string]any{"k": "v"})
	// And the target keeps its own copy between calls.
	mustCall(t, it, "function(t) kept = t end", []any{"x"})
	mustExec(t, it, "kept[1] = 'y'")
	wantEqual(t, "kept", global(t, it, "kept"), []any{"y"})
}

type (
	myBytes  []byte
	myInt    int
	myString string
	myFloat  float64
	myBool   bool
	names    []string
	counts   map[string]int
)

// TestCallValueNormalisation: every value comes back in the normalised Go
// form of api.md's "Lua → Go" rules: the same value, never a different one.
func TestCallValueNormalisation(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	const maxSafe = 1<<53 - 1
	for _, tc := range []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"true", true, true},
		{"false", false, false},
		{"int", 7, int64(7)},
		{"int8", int8(-8), int64(-8)},
		{"int16", int16(1600), int64(1600)},
		{"int32", int32(-320000), int64(-320000)},
		{"int64", int64(640000000000), int64(640000000000)},
		{"uint", uint(7), int64(7)},
		{"uint8", uint8(255), int64(255)},
		{"uint16", uint16(65535), int64(65535)},
		{"uint32", uint32(4294967295), int64(4294967295)},
		{"uint64", uint64(maxSafe), int64(maxSafe)},
		{"max safe int", int64(maxSafe), int64(maxSafe)},
		{"min safe int", int64(-maxSafe), int64(-maxSafe)},
		{"zero", 0, int64(0)},
		{"integral float64", 2.0, int64(2)},
		{"negative integral float64", -3.0, int64(-3)},
		{"fractional float64", 2.5, 2.5},
		{"small float64", 1e-300, 1e-300},
		{"float64 beyond 2^53", 1e300, 1e300},
		{"float64 2^53", float64(1 << 53), float64(1 << 53)},
		{"+Inf", math.Inf(1), math.Inf(1)},
		{"-Inf", math.Inf(-1), math.Inf(-1)},
		{"float32", float32(1.5), 1.5},
		{"inexact float32", float32(0.1), float64(float32(0.1))},
		{"integral float32", float32(4), int64(4)},
		{"string", "spam", "spam"},
		{"empty string", "", ""},
		{"binary string", "a\x00b\xff\xfe", "a\x00b\xff\xfe"},
		{"unicode string", "ünïcødé ✓", "ünïcødé ✓"},
		{"[]byte", []byte("bytes"), "bytes"},
		{"binary []byte", []byte{0, 1, 255}, "\x00\x01\xff"},
		{"empty []byte", []byte{}, ""},
		{"named []byte", myBytes("mine"), "mine"},
		{"named int", myInt(9), int64(9)},
		{"named string", myString("s"), "s"},
		{"named float", myFloat(0.25), 0.25},
		{"named bool", myBool(true), true},
		{"Tuple", interpreters.Tuple{1, "a", true}, []any{int64(1), "a", true}},
		{"empty Tuple", interpreters.Tuple{}, []any{}},
		{"nested Tuple", interpreters.Tuple{1, interpreters.Tuple{"x", "y"}}, []any{int64(1), []any{"x", "y"}}},
		{"[]any", []any{1, 2.5, "three", false}, []any{int64(1), 2.5, "three", false}},
		{"empty []any", []any{}, []any{}},
		{"map[string]any", map[string]any{"a": 1, "b": "two"}, map[string]any{"a": int64(1), "b": "two"}},
		{"empty map", map[string]any{}, []any{}},
		{"nested", map[string]any{
			"list": []any{1, map[string]any{"deep": []any{"x", []byte("y")}}},
			"map":  map[string]any{"t": true},
		}, map[string]any{
			"list": []any{int64(1), map[string]any{"deep": []any{"x", "y"}}},
			"map":  map[string]any{"t": true},
		}},
		{"[]string", []string{"a", "b"}, []any{"a", "b"}},
		{"[]int", []int{3, 2, 1}, []any{int64(3), int64(2), int64(1)}},
		{"named slice", names{"n"}, []any{"n"}},
		{"[][]int", [][]int{{1}, {2, 3}}, []any{[]any{int64(1)}, []any{int64(2), int64(3)}}},
		{"map[string]int", map[string]int{"one": 1}, map[string]any{"one": int64(1)}},
		{"named map", counts{"c": 3}, map[string]any{"c": int64(3)}},
		{"map of slices", map[string][]string{"k": {"v"}}, map[string]any{"k": []any{"v"}}},
		{"Tuple holding a map", interpreters.Tuple{map[string]any{"a": 1}}, []any{map[string]any{"a": int64(1)}}},
		{"long string", strings.Repeat("x", 1<<18), strings.Repeat("x", 1<<18)},
	} {
		got, err := it.Call(identity, tc.in)
		if err != nil {
			t.Errorf("%s: identity call: %v", tc.name, err)
			continue
		}
		wantEqual(t, tc.name, got, tc.want)
	}
	// Bigger and deeper values.
	big := make([]any, 10000)
	bigWant := make([]any, 10000)
	for i := range big {
		big[i] = i
		bigWant[i] = int64(i)
	}
	wantEqual(t, "10000-element list", mustCall(t, it, identity, big), bigWant)
	wide, wideWant := map[string]any{}, map[string]any{}
	for i := range 1000 {
		wide[fmt.Sprint("k", i)] = fmt.Sprint(i)
		wideWant[fmt.Sprint("k", i)] = fmt.Sprint(i)
	}
	wide["\xff\x00key"] = 1.5
	wideWant["\xff\x00key"] = 1.5
	wantEqual(t, "1000-key map", mustCall(t, it, identity, wide), wideWant)
	var deep, deepWant any = "bottom", "bottom"
	for i := range 40 {
		if i%2 == 0 {
			deep, deepWant = []any{deep}, []any{deepWant}
		} else {
			deep, deepWant = map[string]any{"d": deep}, map[string]any{"d": deepWant}
		}
	}
	wantEqual(t, "40 levels of nesting", mustCall(t, it, identity, deep), deepWant)

	// NaN is the one value not equal to itself.
	got := mustCall(t, it, identity, math.NaN())
	if f, ok := got.(float64); !ok || !math.IsNaN(f) {
		t.Errorf("NaN came back as %#v", got)
	}
	// Several arguments come back as several results, in order.
	wantEqual(t, "several", mustCall(t, it, identity, 1, "b", nil, []byte("d")), interpreters.Tuple{int64(1), "b", nil, "d"})
}

// Variables, so that their sum is computed in float64 as Lua does, not as
// an exact constant.
var tenth, fifth = 0.1, 0.2

// TestCallLuaValues: values made in Lua come out in the normalised form.
func TestCallLuaValues(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	for _, tc := range []struct {
		expr string
		want any
	}{
		{"nil", nil},
		{"true", true},
		{"3", int64(3)},
		{"3.0", int64(3)},
		{"-0.5", -0.5},
		{"0.1 + 0.2", tenth + fifth},
		{"2^53 - 1", int64(1<<53 - 1)},
		{"-(2^53 - 1)", int64(-(1<<53 - 1))},
		{"2^53", float64(1 << 53)},
		{"2^60", float64(1 << 60)},
		{"1/0", math.Inf(1)},
		{"-1/0", math.Inf(-1)},
		{"'str'", "str"},
		{"'a\\0b'", "a\x00b"},
		{"{}", []any{}},
		{"{1, 2, 3}", []any{int64(1), int64(2), int64(3)}},
		{"{'x'}", []any{"x"}},
		{"{[1] = 'a', [2] = 'b'}", []any{"a", "b"}},
		{"{a = 1, b = 'two'}", map[string]any{"a": int64(1), "b": "two"}},
		{"{['1'] = 'string key'}", map[string]any{"1": "string key"}},
		{"{a = {1, {b = {}}}}", map[string]any{"a": []any{int64(1), map[string]any{"b": []any{}}}}},
		{"{{}, {{}}}", []any{[]any{}, []any{[]any{}}}},
	} {
		got, err := it.Call("function() return " + tc.expr + " end")
		if err != nil {
			t.Errorf("return %s: %v", tc.expr, err)
			continue
		}
		wantEqual(t, "return "+tc.expr, got, tc.want)
	}
	got := mustCall(t, it, "function() return 0/0 end")
	if f, ok := got.(float64); !ok || !math.IsNaN(f) {
		t.Errorf("0/0 came back as %#v", got)
	}
	// An empty table is an empty slice, never nil.
	if got, ok := mustCall(t, it, "function() return {} end").([]any); !ok || got == nil {
		t.Errorf("{} came back as %#v, want a non-nil []any{}", got)
	}
}

// TestCallResultNotShareable: a result that cannot be copied out fails with
// ErrNotShareable; the call itself ran, and the interpreter stays usable.
func TestCallResultNotShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	for _, expr := range []string{
		"function() end",
		"print",
		"coroutine.create(function() end)",
		"setmetatable({}, {})",
		"(function() local t = {} t.self = t return t end)()",
		"(function() local t = {} t[1] = t return t end)()",
		"{[1] = 'a', [3] = 'c'}",
		"{[2] = 'b'}",
		"{1, 2, x = 3}",
		"{[1.5] = 'x'}",
		"{[true] = 'x'}",
		"{[0] = 'zero'}",
		"{f = print}",
		"{{{function() end}}}",
	} {
		_, err := it.Call("function() ran = (ran or 0) + 1 return " + expr + " end")
		wantNotShareable(t, "return "+expr, err)
	}
	_, err := it.Call("function() ran = ran + 1 return 1, print end")
	wantNotShareable(t, "a second result that is a function", err)
	wantEqual(t, "ran", global(t, it, "ran"), int64(15))
	wantEqual(t, "usable afterwards", mustCall(t, it, "function() return 'ok' end"), "ok")
}

// TestCallArgNotShareable: an argument that cannot be copied in fails with
// ErrNotShareable before anything runs.
func TestCallArgNotShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "calls = 0 function count(...) calls = calls + 1 end")
	type point struct{ X, Y int }
	x := 1
	for _, tc := range []struct {
		name string
		arg  any
	}{
		{"func", func() {}},
		{"chan", make(chan int)},
		{"struct", point{1, 2}},
		{"pointer", &x},
		{"map[int]any", map[int]any{1: "a"}},
		{"int64 2^53", int64(1 << 53)},
		{"int64 -2^53", int64(-(1 << 53))},
		{"uint64 max", uint64(math.MaxUint64)},
		{"int max", math.MaxInt64},
		{"complex", complex(1, 2)},
		{"an *Interpreter", it},
		{"nested func", []any{1, map[string]any{"f": func() {}}}},
		{"nested big int", map[string]any{"n": int64(1 << 60)}},
		{"Tuple with a chan", interpreters.Tuple{make(chan int)}},
	} {
		_, err := it.Call("count", tc.arg)
		wantNotShareable(t, "argument "+tc.name, err)
		_, err = it.Call("count", 1, "ok", tc.arg)
		wantNotShareable(t, "third argument "+tc.name, err)
	}
	wantEqual(t, "calls", global(t, it, "calls"), int64(0))
	mustCall(t, it, "count", 1)
	wantEqual(t, "calls", global(t, it, "calls"), int64(1))
}

// TestCallNotAFunction: an fn that does not evaluate to a function fails in
// the target with a TypeError.
func TestCallNotAFunction(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "number = 5 tbl = {}")
	for _, fn := range []string{"undefined_global", "number", "tbl", "string.nope", "42", "'text'", "nil", "{}"} {
		_, err := it.Call(fn, 1)
		ef := execFailed(t, fmt.Sprintf("Call(%q)", fn), err)
		wantEqual(t, fmt.Sprintf("Type of Call(%q)", fn), ef.Type, "TypeError")
		wantEqual(t, "Formatted", ef.Formatted, ef.Type+": "+ef.Msg)
	}
	wantEqual(t, "usable afterwards", mustCall(t, it, "tostring", 1), "1")
}

// TestCallRaises: an error in the called function is an *ExecutionFailed.
func TestCallRaises(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	_, err := it.Call("function() error('spam', 0) end")
	ef := execFailed(t, "raising call", err)
	wantEqual(t, "Type", ef.Type, "LuaError")
	wantEqual(t, "Msg", ef.Msg, "spam")
	wantEqual(t, "InterpreterID", ef.InterpreterID, it.ID())
	wantEqual(t, "Error()", err.Error(), "LuaError: spam\n\nUncaught in the interpreter:\n\n"+ef.Errdisplay)
	_, err = it.Call("function(t, m) error({type = t, msg = m}) end", "ValueError", "spam")
	ef = execFailed(t, "raising a table", err)
	wantEqual(t, "Type", ef.Type, "ValueError")
	wantEqual(t, "Msg", ef.Msg, "spam")
	_, err = it.Call("function(x) return x + {} end", 1)
	ef = execFailed(t, "arithmetic on a table", err)
	if ef.Type == "" || ef.Msg == "" {
		t.Errorf("runtime error: Type %q, Msg %q", ef.Type, ef.Msg)
	}
}

// TestCallInThread: the call runs in its own goroutine; Wait gives its
// result or error.
func TestCallInThread(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "function add(a, b) return a + b end Spam = {noop = function() end}")
	for _, tc := range []struct {
		fn   string
		args []any
		want any
	}{
		{"function() end", nil, nil},
		{"function() return 1, nil end", nil, interpreters.Tuple{int64(1), nil}},
		{"function() return {1, 2, 3} end", nil, []any{int64(1), int64(2), int64(3)}},
		{"Spam.noop", nil, nil},
		{"add", []any{40, 2}, int64(42)},
		{identity, []any{"spam"}, "spam"},
		{identity, []any{map[string]any{"a": []any{1}}}, map[string]any{"a": []any{int64(1)}}},
	} {
		th := it.CallInThread(tc.fn, tc.args...)
		got, err := waitThread(t, th)
		if err != nil {
			t.Errorf("CallInThread(%q): %v", tc.fn, err)
			continue
		}
		wantEqual(t, fmt.Sprintf("CallInThread(%q)", tc.fn), got, tc.want)
		select {
		case <-th.Done():
		default:
			t.Error("Done is not closed after Wait returned")
		}
		// Wait may be called again, with the same answer.
		again, err2 := th.Wait()
		if err2 != nil || !equalValues(again, got) {
			t.Errorf("second Wait = %#v, %v; first gave %#v", again, err2, got)
		}
	}
	// Failures come back through Wait.
	_, err := waitThread(t, it.CallInThread("function() error('spam', 0) end"))
	ef := execFailed(t, "raising CallInThread", err)
	wantEqual(t, "Msg", ef.Msg, "spam")
	_, err = waitThread(t, it.CallInThread(identity, func() {}))
	wantNotShareable(t, "CallInThread with a func argument", err)
	_, err = waitThread(t, it.CallInThread("function() return print end"))
	wantNotShareable(t, "CallInThread returning a function", err)
}

func equalValues(a, b any) bool {
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

// TestCallErrorsAreDistinct: the error kinds of Call do not blur.
func TestCallErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	_, err := it.Call(identity, make(chan int))
	var ef *interpreters.ExecutionFailed
	if errors.As(err, &ef) {
		t.Errorf("an unshareable argument gave *ExecutionFailed %q", err)
	}
	_, err = it.Call("function() return print end")
	if errors.As(err, &ef) {
		t.Errorf("an unshareable result gave *ExecutionFailed %q", err)
	}
	_, err = it.Call("function() error('x', 0) end")
	if errors.Is(err, interpreters.ErrNotShareable) {
		t.Errorf("a Lua error matches ErrNotShareable: %q", err)
	}
}
