package worker

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// softInterrupt is the error a soft limit stops the running Lua with.
// Unlike a cancellation it is catchable: the pcall that catches it gets a
// MemoryError table, and the call goes on under a fresh interrupt context.
type softInterrupt struct{ err *protocol.Error }

func (s *softInterrupt) Error() string { return s.err.Msg }

// SoftInterrupt raises err in the running call at its next instruction, as
// a Lua error of err.Type that pcall can catch; uncaught, the call fails
// with err. Safe from any goroutine; it does nothing between calls.
func (vm *VM) SoftInterrupt(err *protocol.Error) {
	if ic := vm.ic.Load(); ic != nil {
		ic.stop(&softInterrupt{err: err})
	}
}

// recoverSoft is called by pcall after a failure: when a soft interrupt
// caused it, the running call gets a fresh interrupt context and the error
// becomes a table {type = err.Type, msg = err.Msg}; otherwise it returns
// nil and records nothing.
func (vm *VM) recoverSoft(L *lua.LState) lua.LValue {
	ic := vm.ic.Load()
	if ic == nil {
		return nil
	}
	soft, ok := ic.Err().(*softInterrupt)
	if !ok {
		return nil
	}
	fresh := armInterrupt(ic.parent)
	vm.ic.Store(fresh)
	ic.unlink()
	// The main thread and the running coroutine both run under the call's
	// context; other coroutines adopt the fresh one when resumed.
	setContext(vm.l, fresh)
	if L != vm.l {
		setContext(L, fresh)
	}
	for _, fr := range vm.pstack {
		// The states of the protected calls around this one, which on
		// the portable route are threads of their own.
		if fr.L != vm.l && fr.L != L {
			setContext(fr.L, fresh)
		}
	}
	t := L.CreateTable(0, 2)
	t.RawSetString("type", lua.LString(soft.err.Type))
	t.RawSetString("msg", lua.LString(soft.err.Msg))
	L.SetMetatable(t, vm.errMeta)
	return t
}

// softCause reports the soft interrupt that ended the running call, if any.
func (vm *VM) softCause() *protocol.Error {
	if ic := vm.ic.Load(); ic != nil {
		if soft, ok := ic.Err().(*softInterrupt); ok {
			return soft.err
		}
	}
	return nil
}
