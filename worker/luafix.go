package worker

import (
	"fmt"
	"reflect"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// gopher-lua v1.1.2 mishandles upvalues when an error unwinds frames
// (upstream issue 448):
//
//   - without an error function, raiseError closes every open upvalue of the
//     thread, so closures lose their link to outer locals that are still
//     alive (a counter bumped through a closure after a caught error stops
//     being seen by its frame);
//   - with an error function nothing is closed at all, so closures that
//     escaped from the failed frames keep pointing at registers that later
//     calls overwrite;
//   - PCall clears hasErrorFunc when it returns, even when an outer protected
//     call is still running.
//
// We carry no copy of gopher-lua, so the fix lives here: every protected call
// passes an error function (which keeps raiseError from closing anything),
// saves and restores hasErrorFunc around PCall, and closes exactly the failed
// frames' upvalues from inside the error function, while the registers still
// hold the values. When the error function cannot even be called (the call
// stack or the registry is full), gopher-lua closes every upvalue of the
// thread; protect then reopens those of the frames that live on.
//
// That needs a few unexported fields. Their layout is checked once at
// start-up, and a mismatch (a gopher-lua upgrade) panics rather than
// corrupting memory.
var luaLayout struct {
	hasErrorFunc uintptr // LState.hasErrorFunc bool
	currentFrame uintptr // LState.currentFrame *callFrame
	uvcache      uintptr // LState.uvcache *Upvalue
	uvNext       uintptr // Upvalue.next *Upvalue
	uvIndex      uintptr // Upvalue.index int
	uvClosed     uintptr // Upvalue.closed bool
	dbgFrame     uintptr // Debug.frame *callFrame
	cfParent     uintptr // callFrame.Parent *callFrame
	cfLocalBase  uintptr // callFrame.LocalBase int
	cfTailCall   uintptr // callFrame.TailCall int
	cfFn         uintptr // callFrame.Fn *LFunction
}

func init() {
	lsT := reflect.TypeFor[lua.LState]()
	uvT := reflect.TypeFor[lua.Upvalue]()
	uvPtr := reflect.PointerTo(uvT)
	luaLayout.hasErrorFunc = mustField(lsT, "hasErrorFunc", reflect.TypeFor[bool]())
	luaLayout.uvcache = mustField(lsT, "uvcache", uvPtr)
	luaLayout.uvNext = mustField(uvT, "next", uvPtr)
	luaLayout.uvIndex = mustField(uvT, "index", reflect.TypeFor[int]())
	luaLayout.uvClosed = mustField(uvT, "closed", reflect.TypeFor[bool]())

	cf, ok := lsT.FieldByName("currentFrame")
	if !ok || cf.Type.Kind() != reflect.Pointer || cf.Type.Elem().Kind() != reflect.Struct {
		panic("worker: unsupported gopher-lua version: LState.currentFrame is not a frame pointer")
	}
	frameT := cf.Type
	luaLayout.currentFrame = cf.Offset
	luaLayout.dbgFrame = mustField(reflect.TypeFor[lua.Debug](), "frame", frameT)
	luaLayout.cfParent = mustField(frameT.Elem(), "Parent", frameT)
	luaLayout.cfLocalBase = mustField(frameT.Elem(), "LocalBase", reflect.TypeFor[int]())
	luaLayout.cfTailCall = mustField(frameT.Elem(), "TailCall", reflect.TypeFor[int]())
	luaLayout.cfFn = mustField(frameT.Elem(), "Fn", reflect.TypeFor[*lua.LFunction]())
}

func mustField(t reflect.Type, name string, want reflect.Type) uintptr {
	f, ok := t.FieldByName(name)
	if !ok || len(f.Index) != 1 || f.Type != want {
		panic(fmt.Sprintf("worker: unsupported gopher-lua version: %s.%s is not a %s", t.Name(), name, want))
	}
	return f.Offset
}

func fieldPtr[T any](base unsafe.Pointer, off uintptr) *T {
	return (*T)(unsafe.Add(base, off))
}

func hasErrorFunc(L *lua.LState) bool {
	return *fieldPtr[bool](unsafe.Pointer(L), luaLayout.hasErrorFunc)
}

func setHasErrorFunc(L *lua.LState, v bool) {
	*fieldPtr[bool](unsafe.Pointer(L), luaLayout.hasErrorFunc) = v
}

// frame is an opaque gopher-lua call frame.
type frame = unsafe.Pointer

func currentFrame(L *lua.LState) frame {
	return *fieldPtr[frame](unsafe.Pointer(L), luaLayout.currentFrame)
}

func frameParent(f frame) frame      { return *fieldPtr[frame](f, luaLayout.cfParent) }
func frameTailCalls(f frame) int     { return *fieldPtr[int](f, luaLayout.cfTailCall) }
func frameLocalBase(f frame) int     { return *fieldPtr[int](f, luaLayout.cfLocalBase) }
func frameFn(f frame) *lua.LFunction { return *fieldPtr[*lua.LFunction](f, luaLayout.cfFn) }

// frameDebug returns a Debug for f, so that GetInfo can describe frames
// that GetStack cannot reach (those below a frame with tail calls).
func frameDebug(f frame) *lua.Debug {
	d := &lua.Debug{}
	*fieldPtr[frame](unsafe.Pointer(d), luaLayout.dbgFrame) = f
	return d
}

// absTop is the absolute index of L's stack top in its register array,
// the unit open upvalues are indexed in.
func absTop(L *lua.LState) int {
	base := 0
	if f := currentFrame(L); f != nil {
		base = frameLocalBase(f)
	}
	return base + L.GetTop()
}

func uvHead(L *lua.LState) **lua.Upvalue {
	return fieldPtr[*lua.Upvalue](unsafe.Pointer(L), luaLayout.uvcache)
}

func uvNext(uv *lua.Upvalue) **lua.Upvalue {
	return fieldPtr[*lua.Upvalue](unsafe.Pointer(uv), luaLayout.uvNext)
}

func uvIndex(uv *lua.Upvalue) int {
	return *fieldPtr[int](unsafe.Pointer(uv), luaLayout.uvIndex)
}

func uvClosed(uv *lua.Upvalue) *bool {
	return fieldPtr[bool](unsafe.Pointer(uv), luaLayout.uvClosed)
}

// closeUpvaluesFrom closes L's open upvalues at register idx and above,
// as a Lua function's return does for its own frame. The open list is kept
// sorted by index, so everything from the first match on goes.
func closeUpvaluesFrom(L *lua.LState, idx int) {
	link := uvHead(L)
	for uv := *link; uv != nil; uv = *link {
		if uvIndex(uv) >= idx {
			*link = nil
			for ; uv != nil; uv = *uvNext(uv) {
				uv.Close()
			}
			return
		}
		link = uvNext(uv)
	}
}

// snapshotOpenUpvalues appends L's open upvalues below idx to dst: those
// belong to frames that outlive a protected call starting at idx.
func snapshotOpenUpvalues(dst []*lua.Upvalue, L *lua.LState, idx int) []*lua.Upvalue {
	for uv := *uvHead(L); uv != nil && uvIndex(uv) < idx; uv = *uvNext(uv) {
		dst = append(dst, uv)
	}
	return dst
}

// reopenUpvalues undoes gopher-lua's close-everything for the upvalues of
// live frames. It is only needed when the error function could not run
// (the call stack or registry was full) and gopher-lua closed every open
// upvalue of the thread, which leaves the list empty. No Lua code has run
// since, so the registers still hold the values the closed copies took and
// reopening is invisible to the script.
func reopenUpvalues(L *lua.LState, live []*lua.Upvalue) {
	head := uvHead(L)
	if len(live) == 0 || *head != nil {
		return
	}
	for i, uv := range live {
		*uvClosed(uv) = false
		var next *lua.Upvalue
		if i+1 < len(live) {
			next = live[i+1]
		}
		*uvNext(uv) = next
	}
	*head = live[0]
}
