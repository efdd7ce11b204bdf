package worker

import (
	"reflect"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// TestLuaLayoutMismatchDegrades: a gopher-lua whose layout differs from
// the audited one is an answer, not a panic, and the VM then gives the
// same answers to gopher-lua issue 448's cases by the portable route.
func TestLuaLayoutMismatchDegrades(t *testing.T) {
	// LState as a later release might lay it out: hasErrorFunc renamed,
	// currentFrame of another type.
	type laterLState struct {
		G            *lua.Global
		errFuncSet   bool
		currentFrame uintptr
	}
	type laterUpvalue struct{ value lua.LValue }
	saved := luaLayout
	for _, c := range []struct {
		name          string
		ls, uv, debug reflect.Type
	}{
		{"LState", reflect.TypeFor[laterLState](), reflect.TypeFor[lua.Upvalue](), reflect.TypeFor[lua.Debug]()},
		{"Upvalue", reflect.TypeFor[lua.LState](), reflect.TypeFor[laterUpvalue](), reflect.TypeFor[lua.Debug]()},
		{"Debug", reflect.TypeFor[lua.LState](), reflect.TypeFor[lua.Upvalue](), reflect.TypeFor[laterUpvalue]()},
	} {
		if readLuaLayout(c.ls, c.uv, c.debug) {
			t.Errorf("a changed %s layout was read as the audited one", c.name)
		}
		if luaLayout != saved {
			t.Errorf("a changed %s layout overwrote the offsets read at start-up", c.name)
		}
	}
	if !luaInternalsOff && !readLuaLayout(reflect.TypeFor[lua.LState](), reflect.TypeFor[lua.Upvalue](), reflect.TypeFor[lua.Debug]()) {
		t.Fatal("gopher-lua's own layout does not read as the audited one")
	}

	was := upvalueFix
	upvalueFix = false
	t.Cleanup(func() { upvalueFix = was })
	vm, _ := newVM(t, VMConfig{})
	wantResults(t, mustCall(t, vm, `function()
		local n = 0
		local function inc() n = n + 1 end
		local ok = pcall(function()
			inc()
			pcall(function() inc() error("inner") end)
			local x = 42
			saved = function() return x end
			error("outer")
		end)
		`+clobber+`
		inc()
		return n, ok, saved()
	end`), int64(3), false, int64(42))
	if n := len(vm.pstack); n != 0 {
		t.Fatalf("protected-call bookkeeping left %d entries", n)
	}
}
