package worker

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// gopher-lua's loop under a context polls ctx.Done() before every
// instruction, an interface call and a non-blocking channel receive that
// cost a hot loop about a third of its speed. Under an interrupt context the
// VM runs interruptLoop instead: the same loop, polling the context's
// stopped flag, a plain load. It takes gopher-lua's poll only once the flag
// is set, or when the state's context is not an interrupt context (Go code
// may set one while the loop runs), so it stops where gopher-lua would and
// with the same error.
//
// The loop needs gopher-lua internals: its instruction table, its own loop
// (for the entries the copy leaves to it) and the layouts of LState, its
// call frames and its fixed call stack, mirrored below. Start-up checks every
// mirror against what reflect sees; what reflect cannot see (the
// instruction table's element type, the loop's signature) is pinned to the
// gopher-lua version it was read from. On any mismatch the VM keeps
// gopher-lua's loop, which is slower but sound.

// auditedLuaVersion is the gopher-lua release the unchecked parts were
// read from.
const auditedLuaVersion = "v1.1.2"

//go:linkname luaJumpTable github.com/yuin/gopher-lua.jumpTable
var luaJumpTable [lua.OP_NOP + 1]func(*lua.LState, uint32, *luaFrame) int

//go:linkname luaMainLoopWithContext github.com/yuin/gopher-lua.mainLoopWithContext
func luaMainLoopWithContext(L *lua.LState, baseframe *luaFrame)

// luaState mirrors lua.LState.
type luaState struct {
	G       *lua.Global
	Parent  *lua.LState
	Env     *lua.LTable
	Panic   func(*lua.LState)
	Dead    bool
	Options lua.Options

	stop         int32
	reg          unsafe.Pointer
	stack        ifaceWords
	alloc        unsafe.Pointer
	currentFrame *luaFrame
	wrapped      bool
	uvcache      *lua.Upvalue
	hasErrorFunc bool
	mainLoop     func(*lua.LState, *luaFrame)
	ctx          context.Context
	ctxCancelFn  context.CancelFunc
}

// luaFrame mirrors gopher-lua's callFrame.
type luaFrame struct {
	Idx        int
	Fn         *lua.LFunction
	Parent     *luaFrame
	Pc         int
	Base       int
	LocalBase  int
	ReturnBase int
	NArgs      int
	NRet       int
	TailCall   int
}

// fixedFrameStack mirrors gopher-lua's fixedCallFrameStack, the call stack
// of every state not made with MinimizeStackMemory.
type fixedFrameStack struct {
	array []luaFrame
	sp    int
}

// ifaceWords is how a non-empty interface value is laid out.
type ifaceWords struct {
	tab  unsafe.Pointer
	data unsafe.Pointer
}

// fastLoop reports whether the start-up checks passed, so that interrupt
// contexts run interruptLoop and the mirrors may be used (dropStaleFrames).
var fastLoop bool

// fixedStackTab is the interface table of a fixed call stack: a state whose
// stack has another one is left to gopher-lua's loop.
var fixedStackTab unsafe.Pointer

func init() {
	fastLoop = !luaInternalsOff && checkFastLoop()
}

func checkFastLoop() bool {
	if luaVersion() != auditedLuaVersion {
		return false
	}
	// An empty entry would mean the name bound to some other table.
	for _, f := range luaJumpTable {
		if f == nil {
			return false
		}
	}
	lsT := reflect.TypeFor[lua.LState]()
	seen := map[[2]reflect.Type]bool{}
	if !sameLayout(lsT, reflect.TypeFor[luaState](), seen) {
		return false
	}
	probe := lua.NewState(lua.Options{SkipOpenLibs: true, CallStackSize: 1, RegistrySize: 128})
	defer probe.Close()
	sf, _ := lsT.FieldByName("stack")
	stack := reflect.NewAt(sf.Type, unsafe.Add(unsafe.Pointer(probe), sf.Offset)).Elem()
	if stack.IsNil() {
		return false
	}
	concrete := stack.Elem()
	if !sameLayout(concrete.Type(), reflect.TypeFor[*fixedFrameStack](), seen) {
		return false
	}
	words := (*luaState)(unsafe.Pointer(probe)).stack
	if words.data != concrete.UnsafePointer() {
		return false
	}
	fixedStackTab = words.tab
	return true
}

// luaVersion is the version of the gopher-lua module built in, as the
// source path of its loop records it; "" when the path names none (vendored,
// or replaced by a directory or another module, any of which may differ
// anywhere). The build info would say it too, but test binaries, which also
// run as workers, carry none.
func luaVersion() string {
	f := runtime.FuncForPC(reflect.ValueOf(luaMainLoopWithContext).Pointer())
	if f == nil || f.Name() != "github.com/yuin/gopher-lua.mainLoopWithContext" {
		return ""
	}
	file, _ := f.FileLine(f.Entry())
	_, rest, ok := strings.Cut(file, "github.com/yuin/gopher-lua@")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "/")
	return v
}

// sameLayout reports whether mirror lays memory out as real does: the same
// field names, offsets and sizes, down through pointers, slices and
// function signatures. unsafe.Pointer stands for any pointer and ifaceWords
// for any non-empty interface.
func sameLayout(real, mirror reflect.Type, seen map[[2]reflect.Type]bool) bool {
	if real == mirror {
		return true
	}
	if real.Size() != mirror.Size() {
		return false
	}
	key := [2]reflect.Type{real, mirror}
	if seen[key] {
		return true // a cycle (callFrame.Parent) holds if the rest does
	}
	seen[key] = true
	switch mirror {
	case reflect.TypeFor[unsafe.Pointer]():
		return real.Kind() == reflect.Pointer
	case reflect.TypeFor[ifaceWords]():
		return real.Kind() == reflect.Interface && real.NumMethod() > 0
	}
	if real.Kind() != mirror.Kind() {
		return false
	}
	switch mirror.Kind() {
	case reflect.Pointer, reflect.Slice:
		return sameLayout(real.Elem(), mirror.Elem(), seen)
	case reflect.Struct:
		if real.NumField() != mirror.NumField() {
			return false
		}
		for i := range real.NumField() {
			r, m := real.Field(i), mirror.Field(i)
			if r.Name != m.Name || r.Offset != m.Offset || !sameLayout(r.Type, m.Type, seen) {
				return false
			}
		}
		return true
	case reflect.Func:
		if real.NumIn() != mirror.NumIn() || real.NumOut() != mirror.NumOut() || real.IsVariadic() != mirror.IsVariadic() {
			return false
		}
		for i := range real.NumIn() {
			if !sameLayout(real.In(i), mirror.In(i), seen) {
				return false
			}
		}
		for i := range real.NumOut() {
			if !sameLayout(real.Out(i), mirror.Out(i), seen) {
				return false
			}
		}
		return true
	}
	return false
}

// setContext is L.SetContext(ctx), with interruptLoop as L's loop when ctx
// is an interrupt context. gopher-lua resets the loop on every SetContext,
// RemoveContext and NewThread, so states only keep it while we set it.
func setContext(L *lua.LState, ctx context.Context) {
	L.SetContext(ctx)
	if _, ok := ctx.(*interruptCtx); !ok || !fastLoop {
		return
	}
	if ls := (*luaState)(unsafe.Pointer(L)); ls.stack.tab == fixedStackTab {
		ls.mainLoop = interruptLoop
	}
}

// usesFastLoop reports whether L runs interruptLoop.
func usesFastLoop(L *lua.LState) bool {
	if !fastLoop {
		return false
	}
	loop := (*luaState)(unsafe.Pointer(L)).mainLoop
	return loop != nil && reflect.ValueOf(loop).Pointer() == reflect.ValueOf(interruptLoop).Pointer()
}

// interruptLoop is gopher-lua's mainLoopWithContext with a cheaper poll.
func interruptLoop(L *lua.LState, baseframe *luaFrame) {
	ls := (*luaState)(unsafe.Pointer(L))
	st := (*fixedFrameStack)(ls.stack.data)
	if ls.stack.tab != fixedStackTab || st.sp == 0 || st.array[st.sp-1].Fn.IsG {
		// Nothing to poll for: an empty stack returns, a Go function runs
		// to its end.
		luaMainLoopWithContext(L, baseframe)
		return
	}
	ls.currentFrame = &st.array[st.sp-1]
	for {
		cf := ls.currentFrame
		inst := cf.Fn.Proto.Code[cf.Pc]
		cf.Pc++
		if ic, ok := ls.ctx.(*interruptCtx); !ok || ic.stopped.Load() {
			select {
			case <-ls.ctx.Done():
				// gopher-lua passes the message as the format, which
				// would mangle a soft limit's message holding a '%'.
				L.RaiseError("%s", ls.ctx.Err().Error())
				return
			default:
			}
		}
		if luaJumpTable[inst>>26](L, inst, baseframe) == 1 {
			return
		}
	}
}

// dropStaleFrames clears the call frames above L's current one. gopher-lua
// leaves a popped frame in place until a deeper call overwrites it, so
// after a call returned or an error unwound, the functions its frames name
// stay reachable, and with them whatever those reach: after a chain of
// wrapped coroutines stopped by an error, every coroutine, each with a call
// stack and registry of its own. A frame never used is zero, so the
// clearing stops at the first such one.
func dropStaleFrames(L *lua.LState) {
	if !fastLoop {
		return
	}
	ls := (*luaState)(unsafe.Pointer(L))
	if ls.stack.tab != fixedStackTab {
		return
	}
	st := (*fixedFrameStack)(ls.stack.data)
	for i := st.sp; i < len(st.array) && st.array[i].Fn != nil; i++ {
		st.array[i] = luaFrame{}
	}
}
