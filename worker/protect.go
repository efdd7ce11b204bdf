package worker

import (
	lua "github.com/yuin/gopher-lua"
	"runtime"
)

// pframe is one protected call in progress. Protected calls nest strictly
// on the VM goroutine, across coroutines too (a resume is a nested Go call),
// so the innermost one is always the last of VM.pstack, and it is the one
// whose PCall invokes the error function.
type pframe struct {
	L         *lua.LState
	base      int            // absolute register of the called function
	handler   *lua.LFunction // xpcall's message handler, or nil
	trace     bool           // render a traceback for the caller
	handled   bool           // the error function ran
	traceback string
}

// protect calls the function below the nargs arguments on L's stack, as
// L.PCall does, without gopher-lua's upvalue bugs (see luafix.go). With
// trace set, the traceback at the error site is returned with the error.
// Go code that runs Lua inside a call must use this (VM.ProtectedCall),
// never L.PCall, which would re-break an enclosing protected call.
func (vm *VM) protect(L *lua.LState, nargs, nret int, handler *lua.LFunction, trace bool) (string, error) {
	if !upvalueFix {
		return vm.protectInThread(L, nargs, nret, handler, trace)
	}
	base := absTop(L) - nargs - 1
	snap := len(vm.liveUV)
	vm.liveUV = snapshotOpenUpvalues(vm.liveUV, L, base+1)
	vm.pstack = append(vm.pstack, pframe{L: L, base: base, handler: handler, trace: trace})
	saved := hasErrorFunc(L)

	err := L.PCall(nargs, nret, vm.errfunc)

	setHasErrorFunc(L, saved)
	top := len(vm.pstack) - 1
	fr := vm.pstack[top]
	vm.pstack[top] = pframe{}
	vm.pstack = vm.pstack[:top]
	if err != nil && !fr.handled {
		reopenUpvalues(L, vm.liveUV[snap:])
	}
	clear(vm.liveUV[snap:])
	vm.liveUV = vm.liveUV[:snap]
	return fr.traceback, err
}

// onError is the error function of every protected call. It runs at the
// error site, before PCall unwinds the registers: the one moment the failed
// frames' upvalues can be closed with the values they should keep.
func (vm *VM) onError(L *lua.LState) int {
	obj := L.Get(1)
	i := len(vm.pstack) - 1
	if i < 0 || vm.pstack[i].L != L {
		L.Push(obj)
		return 1
	}
	if upvalueFix {
		// PCall cleared the flag before calling us; an error raised from
		// here on must not close the live frames' upvalues either.
		setHasErrorFunc(L, true)
	}
	fr := &vm.pstack[i]
	fr.handled = true
	if fr.trace {
		name := ""
		if vm.target.proto == nil {
			name = vm.target.fn
		}
		fr.traceback = traceback(L, vm.entry, name)
	}
	if upvalueFix {
		closeUpvaluesFrom(L, fr.base+1)
	}
	if h := fr.handler; h != nil {
		// fr is not used past this point: the nested call may move pstack.
		L.Push(h)
		L.Push(obj)
		if _, err := vm.protect(L, 1, 1, nil, false); err != nil {
			obj = lua.LString("error in error handling")
		} else {
			obj = L.Get(-1)
			L.Pop(1)
		}
	}
	if !upvalueFix {
		raiseHandled(L, obj)
	}
	L.Push(obj)
	return 1
}

// errorObject is the Lua value an error from protect carries.
func errorObject(err error) lua.LValue {
	if ae, ok := err.(*lua.ApiError); ok {
		return ae.Object
	}
	return lua.LString(err.Error())
}

// checkInterrupt re-raises a pending interrupt at once, so that a caught
// error never hides it, not even for one instruction.
func checkInterrupt(L *lua.LState) {
	ctx := L.Context()
	if ctx == nil {
		return
	}
	select {
	case <-ctx.Done():
		L.RaiseError("%s", ctx.Err())
	default:
	}
}

// basePCall replaces pcall.
func (vm *VM) basePCall(L *lua.LState) int {
	v := L.CheckAny(1)
	if v.Type() != lua.LTFunction && L.GetMetaField(v, "__call").Type() != lua.LTFunction {
		L.Push(lua.LFalse)
		L.Push(lua.LString("attempt to call a " + v.Type().String() + " value"))
		return 2
	}
	if _, err := vm.protect(L, L.GetTop()-1, lua.MultRet, nil, false); err != nil {
		return vm.caught(L, err)
	}
	L.Insert(lua.LTrue, 1)
	return L.GetTop()
}

// caught pushes what pcall and xpcall return for a caught error, false and
// the error object (a soft limit's own error when one was raised), unless
// the call is being interrupted, which no pcall may catch.
func (vm *VM) caught(L *lua.LState, err error) int {
	obj := errorObject(err)
	if soft := vm.recoverSoft(L); soft != nil {
		obj = soft
	}
	checkInterrupt(L)
	L.Push(lua.LFalse)
	L.Push(obj)
	return 2
}

// baseXPCall replaces xpcall. Arguments after the handler are passed to
// the function, as in Lua 5.2; Lua 5.1 code passes none.
func (vm *VM) baseXPCall(L *lua.LState) int {
	fn := L.CheckAny(1)
	handler := L.CheckFunction(2)
	top := L.GetTop()
	L.Push(fn)
	for i := 3; i <= top; i++ {
		L.Push(L.Get(i))
	}
	if _, err := vm.protect(L, top-2, lua.MultRet, handler, false); err != nil {
		return vm.caught(L, err)
	}
	L.Insert(lua.LTrue, top+1)
	return L.GetTop() - top
}

// adoptContext makes th run under L's context. gopher-lua gives a
// coroutine a child of the context current when it was created, so a
// generator made in one call would die with the end of that call, and one
// made outside any call would never be interruptible.
func adoptContext(L, th *lua.LState) {
	if ctx := L.Context(); ctx != nil {
		if th.Context() != ctx {
			setContext(th, ctx)
		}
	} else if th.Context() != nil {
		th.RemoveContext()
	}
}

// coResume replaces coroutine.resume.
func (vm *VM) coResume(L *lua.LState) int {
	adoptContext(L, L.CheckThread(1))
	return vm.origResume(L)
}

// coWrap replaces coroutine.wrap: it keeps gopher-lua's wrapper (which
// carries the error semantics of a wrapped coroutine) and puts a closure in
// front of it that hands the coroutine the current context on every call.
func (vm *VM) coWrap(L *lua.LState) int {
	if n := vm.origWrap(L); n != 1 {
		return n
	}
	cl, ok := L.Get(-1).(*lua.LFunction)
	if !ok || !cl.IsG || len(cl.Upvalues) != 1 {
		return 1
	}
	th, ok := cl.Upvalues[0].Value().(*lua.LState)
	if !ok {
		return 1
	}
	vm.origWrapAux = cl.GFunction
	L.Pop(1)
	L.Push(L.NewClosure(vm.wrapAux, th))
	return 1
}

// wrapAux is the function coroutine.wrap returns. Its upvalue 1 is the
// coroutine, where gopher-lua's own wrapper expects it.
//
// An error out of a wrapped coroutine reaches L as a panic that skips
// gopher-lua's switch back to L, leaving the VM's current thread on the
// dead coroutine: a chain of nested coroutines stopped by an error would
// stay reachable, through their parents, until the next resume. L is
// current again whichever way the coroutine ends.
func (vm *VM) wrapAux(L *lua.LState) int {
	if th, ok := L.Get(lua.UpvalueIndex(1)).(*lua.LState); ok {
		adoptContext(L, th)
	}
	defer func() { L.G.CurrentThread = L }()
	return vm.origWrapAux(L)
}

// coYield replaces coroutine.yield. gopher-lua cannot suspend Go frames:
// a yield from Lua code that Go called (through pcall, a metamethod, an
// iterator, a sort comparator) would end that call as if it had returned
// and leave the coroutine corrupt. Lua 5.1 refuses such a yield, and so
// does this, with an error the script can catch.
func (vm *VM) coYield(L *lua.LState) int {
	if yieldCrossesGo() {
		L.RaiseError("attempt to yield across a Go call boundary (pcall, a metamethod, an iterator or a comparator)")
	}
	return vm.origYield(L)
}

// coRunning replaces coroutine.running. gopher-lua answers nil when the
// calling state is the main one; on the portable route (portable.go) code
// outside any coroutine runs in a helper thread, so the answer comes from
// the thread the VM is running, which that route leaves as it was.
func coRunning(L *lua.LState) int {
	if L.G.CurrentThread == L.G.MainThread {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(L.G.CurrentThread)
	return 1
}

// luaLoops are the functions that run Lua code: each nests in Go once more
// when Go calls Lua. Adjacent ones are one loop (interruptLoop hands some
// frames to gopher-lua's own).
var luaLoops = map[string]bool{
	"github.com/yuin/gopher-lua.mainLoop":                 true,
	"github.com/yuin/gopher-lua.mainLoopWithContext":      true,
	"github.com/subinterp/subinterp/worker.interruptLoop": true,
}

// yieldCrossesGo reports whether the running coroutine is inside more than
// the one Lua loop its resume started: a yield would cross Go frames.
func yieldCrossesGo() bool {
	var pcs [256]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	loops, inLoop := 0, false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "github.com/yuin/gopher-lua.threadRun":
			return loops > 1
		case luaLoops[f.Function]:
			if !inLoop {
				loops++
			}
			inLoop = true
		default:
			inLoop = false
		}
		if !more {
			// No coroutine's run within reach: deeper than the buffer
			// means loops inside loops.
			return n == len(pcs)
		}
	}
}
