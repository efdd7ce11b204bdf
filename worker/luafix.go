package worker

import (
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
// start-up; on a mismatch (a gopher-lua upgrade) upvalueFix stays false
// and protect takes the portable route of portable.go instead, which gives
// the same answers without reaching into gopher-lua.
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

// upvalueFix reports whether luaLayout was read: protect and traceback may
// use the fields it locates.
var upvalueFix bool

func init() {
	upvalueFix = !luaInternalsOff && readLuaLayout(reflect.TypeFor[lua.LState](), reflect.TypeFor[lua.Upvalue](), reflect.TypeFor[lua.Debug]())
}

// readLuaLayout fills luaLayout from the types of gopher-lua's LState,
// Upvalue and Debug, and reports whether every field was there with the
// type this file expects. It never panics: a mismatch is an answer.
func readLuaLayout(lsT, uvT, dbgT reflect.Type) bool {
	ok := true
	field := func(t reflect.Type, name string, want reflect.Type) uintptr {
		f, found := t.FieldByName(name)
		if !found || len(f.Index) != 1 || f.Type != want {
			ok = false
			return 0
		}
		return f.Offset
	}
	uvPtr := reflect.PointerTo(uvT)
	layout := luaLayout
	layout.hasErrorFunc = field(lsT, "hasErrorFunc", reflect.TypeFor[bool]())
	layout.uvcache = field(lsT, "uvcache", uvPtr)
	layout.uvNext = field(uvT, "next", uvPtr)
	layout.uvIndex = field(uvT, "index", reflect.TypeFor[int]())
	layout.uvClosed = field(uvT, "closed", reflect.TypeFor[bool]())
	cf, found := lsT.FieldByName("currentFrame")
	if !found || len(cf.Index) != 1 || cf.Type.Kind() != reflect.Pointer || cf.Type.Elem().Kind() != reflect.Struct {
		return false
	}
	frameT := cf.Type
	layout.currentFrame = cf.Offset
	layout.dbgFrame = field(dbgT, "frame", frameT)
	layout.cfParent = field(frameT.Elem(), "Parent", frameT)
	layout.cfLocalBase = field(frameT.Elem(), "LocalBase", reflect.TypeFor[int]())
	layout.cfTailCall = field(frameT.Elem(), "TailCall", reflect.TypeFor[int]())
	layout.cfFn = field(frameT.Elem(), "Fn", reflect.TypeFor[*lua.LFunction]())
	if ok {
		luaLayout = layout
	}
	return ok
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
