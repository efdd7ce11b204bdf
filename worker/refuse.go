package worker

import (
	"fmt"
	"math"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// strRep is string.rep with a cap on the result: past the memory limit it
// is refused with a MemoryError, past maxRepResult with a Lua error.
func (vm *VM) strRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := math.Trunc(float64(L.CheckNumber(2)))
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	size := n * float64(len(s))
	if limit := vm.cfg.MemoryLimit; limit > 0 && size > float64(limit) {
		vm.refuseForMemory(L, "string.rep: the result would be %.0f bytes, more than the memory limit of %d bytes", size, limit)
	}
	if size > maxRepResult {
		L.RaiseError("string.rep: the result would be %.0f bytes, more than the limit of %d", size, maxRepResult)
	}
	L.Push(lua.LString(strings.Repeat(s, int(n))))
	return 1
}

// refuseForMemory raises the MemoryError of an operation refused because
// its result alone would pass the memory limit: a table {type =
// "MemoryError", msg = ...} that pcall catches like the soft limit's, and
// that, uncaught (or raised again), fails the call as the memory limit does.
// A script can raise a table of that type itself; only this one counts.
func (vm *VM) refuseForMemory(L *lua.LState, format string, args ...any) {
	t := L.CreateTable(0, 2)
	t.RawSetString("type", lua.LString("MemoryError"))
	t.RawSetString("msg", lua.LString(fmt.Sprintf(format, args...)))
	t.Metatable = vm.errMeta
	vm.refused = t
	L.Error(t, 1)
}
