package worker

import (
	lua "github.com/yuin/gopher-lua"
)

// maxProtectDepth bounds protected calls nested in one another on the
// portable route, where each one has a call stack of its own: without it a
// pcall recursion would stop at the memory limit rather than overflow, as
// it does on one shared stack. It is C Lua 5.1's limit on nested C calls.
const maxProtectDepth = 200

// protectInThread is protect without gopher-lua's internals, for a
// gopher-lua whose layout luafix.go does not know. The function runs in a
// thread of its own, so the frames an error unwinds are exactly that
// thread's: closing all of its open upvalues, as gopher-lua does when it
// raises with no error function, closes those of the failed frames and no
// others. The error function (onError) runs the handler and renders the
// traceback at the error site as on the other route, then raises the
// outcome again with no error function set, which closes them.
//
// The thread's registers are never reused while an upvalue still points
// at them: a Lua function's return closes its own, an error closes all of
// the thread's, so a thread is put back for the next protected call once
// its call has returned either way.
func (vm *VM) protectInThread(L *lua.LState, nargs, nret int, handler *lua.LFunction, trace bool) (string, error) {
	if len(vm.pstack) >= maxProtectDepth {
		L.RaiseError("stack overflow (protected calls nested too deep)")
	}
	th := vm.thread(L)
	current := L.G.CurrentThread
	L.XMoveTo(th, nargs+1)
	vm.pstack = append(vm.pstack, pframe{L: th, handler: handler, trace: trace})

	err := th.PCall(nargs, nret, vm.errfunc)
	L.G.CurrentThread = current // a wrapped coroutine's error may leave its own

	top := len(vm.pstack) - 1
	fr := vm.pstack[top]
	vm.pstack[top] = pframe{}
	vm.pstack = vm.pstack[:top]
	if err == nil {
		th.XMoveTo(L, th.GetTop())
	}
	th.SetTop(0)
	vm.threads = append(vm.threads, th)
	return fr.traceback, err
}

// thread returns an idle thread for a protected call from L, running under
// L's context and environment.
func (vm *VM) thread(L *lua.LState) *lua.LState {
	var th *lua.LState
	if n := len(vm.threads); n > 0 {
		th = vm.threads[n-1]
		vm.threads[n-1] = nil
		vm.threads = vm.threads[:n-1]
	} else {
		var cancel func()
		th, cancel = L.NewThread()
		if cancel != nil {
			cancel() // its own context is replaced right below
		}
	}
	th.Env = L.Env
	adoptContext(L, th)
	return th
}

// dropThreads lets go of the idle threads once a call is over: their
// stale call frames would keep what the call's functions reached.
func (vm *VM) dropThreads() {
	clear(vm.threads)
	vm.threads = vm.threads[:0]
}

// raiseHandled ends onError on the portable route: obj, the outcome of
// the handler, is raised from the failed thread with no error function
// set (PCall clears it before calling one), which closes the thread's open
// upvalues, and PCall returns it.
func raiseHandled(L *lua.LState, obj lua.LValue) {
	L.Error(obj, 0)
}
