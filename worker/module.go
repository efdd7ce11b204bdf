package worker

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// luaModule is the Lua-side `interpreters` module. Every operation is a
// request to the supervisor on the call channel, served as part of the
// running call, so interrupting the call also ends a blocked queue get.
// Handles are cached per ID: the same interpreter or queue is always the
// same userdata in one VM.
type luaModule struct {
	w *worker
	L *lua.LState

	interps    map[int64]*lua.LUserData
	queues     map[int64]*lua.LUserData
	interpMeta *lua.LTable
	queueMeta  *lua.LTable
	errorMeta  *lua.LTable
	modes      [4]*lua.LTable // UNBOUND, UNBOUND_ERROR, UNBOUND_REMOVE by protocol.UnboundMode
	mod        *lua.LTable
}

type interpHandle struct{ id int64 }

// queueHandle is a queue as Lua sees it. maxsize never changes, so it is
// asked once; an unbounded queue's puts need no answer (see queuePut).
type queueHandle struct {
	id      int64
	maxsize int
	known   bool // maxsize has been learned
}

func newLuaModule(w *worker) *luaModule {
	return &luaModule{w: w, interps: map[int64]*lua.LUserData{}, queues: map[int64]*lua.LUserData{}}
}

// codec converts values with this module's queue handles.
func (m *luaModule) codec() *protocol.LuaCodec {
	return &protocol.LuaCodec{
		QueueID: func(ud *lua.LUserData) (int64, bool) {
			q, ok := ud.Value.(*queueHandle)
			if !ok {
				return 0, false
			}
			return q.id, true
		},
		Queue: func(id int64) lua.LValue { return m.queue(id) },
	}
}

// open is the module loader, run by require("interpreters").
func (m *luaModule) open(L *lua.LState) int {
	L.Push(m.mod)
	return 1
}

// init builds the module and its metatables in L. It runs when the VM is
// made, before any value can arrive: a queue passed in a call's arguments
// needs the queue metatable whether or not the script required the module.
func (m *luaModule) init(L *lua.LState) {
	m.L = L
	m.errorMeta = L.CreateTable(0, 1)
	m.errorMeta.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		L.Push(lua.LString(fmt.Sprintf("%s: %s", lua.LVAsString(t.RawGetString("type")), lua.LVAsString(t.RawGetString("msg")))))
		return 1
	}))

	interpMethods := funcTable(L, 0, map[string]lua.LGFunction{
		"whence":       m.interpWhence,
		"is_running":   m.interpIsRunning,
		"exec":         m.interpExec,
		"call":         m.interpCall,
		"prepare_main": m.interpPrepareMain,
		"close":        m.interpClose,
	})
	m.interpMeta = handleMeta(L, "Interpreter", interpMethods, func(L *lua.LState) int64 { return m.checkInterp(L, 1).id })

	queueMethods := funcTable(L, 0, map[string]lua.LGFunction{
		"maxsize":    m.queueMaxSize,
		"qsize":      m.queueQSize,
		"empty":      m.queueEmpty,
		"full":       m.queueFull,
		"put":        func(L *lua.LState) int { return m.queuePut(L, true) },
		"put_nowait": func(L *lua.LState) int { return m.queuePut(L, false) },
		"get":        func(L *lua.LState) int { return m.queueGet(L, true) },
		"get_nowait": func(L *lua.LState) int { return m.queueGet(L, false) },
	})
	m.queueMeta = handleMeta(L, "Queue", queueMethods, func(L *lua.LState) int64 { return m.checkQueue(L, 1).id })

	modes := map[protocol.UnboundMode]string{
		protocol.UnboundReplace: "UNBOUND", protocol.UnboundError: "UNBOUND_ERROR", protocol.UnboundRemove: "UNBOUND_REMOVE",
	}
	mod := funcTable(L, len(modes), map[string]lua.LGFunction{
		"create":       m.create,
		"get_current":  m.getCurrent,
		"get_main":     m.getMain,
		"list_all":     m.listAll,
		"Interpreter":  m.lookupInterp,
		"create_queue": m.createQueue,
		"Queue":        m.lookupQueue,
		"is_shareable": m.isShareable,
	})
	for mode, name := range modes {
		t := L.CreateTable(0, 0)
		mt := L.CreateTable(0, 2)
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int { L.Push(lua.LString(name)); return 1 }))
		mt.RawSetString("__metatable", lua.LString(name))
		L.SetMetatable(t, mt)
		m.modes[mode] = t
		mod.RawSetString(name, t)
	}
	m.mod = mod
}

// funcTable is a table of funcs made at its size (see NewVM), with room
// for extra more entries.
func funcTable(L *lua.LState, extra int, funcs map[string]lua.LGFunction) *lua.LTable {
	return L.SetFuncs(L.CreateTable(0, len(funcs)+extra), funcs)
}

// handleMeta is the metatable of one kind of handle: h.id, h:method(...),
// tostring(h) = "Kind(id)", and a locked metatable.
func handleMeta(L *lua.LState, kind string, methods *lua.LTable, id func(L *lua.LState) int64) *lua.LTable {
	mt := L.CreateTable(0, 3)
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		n := id(L)
		if k, ok := L.Get(2).(lua.LString); ok && k == "id" {
			L.Push(lua.LNumber(n))
			return 1
		}
		L.Push(methods.RawGet(L.Get(2)))
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(fmt.Sprintf("%s(%d)", kind, id(L))))
		return 1
	}))
	mt.RawSetString("__metatable", lua.LString(kind))
	return mt
}

// raise raises err in Lua as a typed error table named as CPython names
// the exception.
func (m *luaModule) raise(L *lua.LState, err error) {
	e := protocol.AsError(err)
	typ := "InterpreterError"
	switch e.Code {
	case protocol.CodeNotFound:
		typ = "InterpreterNotFoundError"
	case protocol.CodeExecutionFailed:
		typ = "ExecutionFailed"
	case protocol.CodeNotShareable:
		typ = "NotShareableError"
	case protocol.CodeQueueEmpty:
		typ = "QueueEmpty"
	case protocol.CodeQueueFull:
		typ = "QueueFull"
	case protocol.CodeQueueNotFound:
		typ = "QueueNotFoundError"
	case protocol.CodeItemDestroyed:
		typ = "ItemInterpreterDestroyed"
	case protocol.CodeInvalidArgument:
		typ = "ValueError"
	case protocol.CodeHostError:
		typ = "HostError"
	}
	msg := e.Msg
	if e.Code == protocol.CodeExecutionFailed && e.Formatted != "" {
		msg = e.Formatted
	}
	t := L.CreateTable(0, 3)
	t.RawSetString("type", lua.LString(typ))
	t.RawSetString("msg", lua.LString(msg))
	if e.Code == protocol.CodeExecutionFailed {
		exc := L.CreateTable(0, 4)
		exc.RawSetString("type", lua.LString(e.Type))
		exc.RawSetString("msg", lua.LString(e.Msg))
		exc.RawSetString("formatted", lua.LString(e.Formatted))
		exc.RawSetString("errdisplay", lua.LString(e.Errdisplay))
		t.RawSetString("excinfo", exc)
	}
	L.SetMetatable(t, m.errorMeta)
	L.Error(t, 0)
}

func (m *luaModule) raiseType(L *lua.LState, typ, format string, args ...any) {
	t := L.CreateTable(0, 2)
	t.RawSetString("type", lua.LString(typ))
	t.RawSetString("msg", lua.LString(fmt.Sprintf(format, args...)))
	L.SetMetatable(t, m.errorMeta)
	L.Error(t, 0)
}

// request asks the supervisor, which ends the request when the running
// call is cancelled or times out.
func (m *luaModule) request(L *lua.LState, method string, params any) []byte {
	res, err := m.w.request(method, params)
	if err != nil {
		if ctx := L.Context(); ctx != nil && ctx.Err() != nil {
			// The call is being interrupted: the VM reports why.
			L.RaiseError("%s", context.Cause(ctx))
		}
		m.raise(L, err)
	}
	return res
}

func (m *luaModule) decode(L *lua.LState, b []byte, v any) {
	if err := msgpack.Unmarshal(b, v); err != nil {
		m.raise(L, protocol.Errorf(protocol.CodeProtocol, "malformed reply: %v", err))
	}
}

// checkID reads an interpreter or queue ID argument as CPython validates
// one: an integral number, not negative.
func (m *luaModule) checkID(L *lua.LState, n int) int64 {
	v := L.Get(n)
	num, ok := v.(lua.LNumber)
	if !ok {
		m.raiseType(L, "TypeError", "id must be an int, got %s", v.Type())
	}
	f := float64(num)
	if f != math.Trunc(f) || math.IsInf(f, 0) {
		m.raiseType(L, "TypeError", "id must be an int, got %v", f)
	}
	if f < 0 {
		m.raiseType(L, "ValueError", "id must be a non-negative int, got %v", int64(f))
	}
	if f > protocol.MaxSafeInt {
		m.raiseType(L, "ValueError", "id %v out of range", f)
	}
	return int64(f)
}

func (m *luaModule) interp(id int64) *lua.LUserData {
	if ud := m.interps[id]; ud != nil {
		return ud
	}
	ud := m.L.NewUserData()
	ud.Value = &interpHandle{id: id}
	ud.Metatable = m.interpMeta
	m.interps[id] = ud
	return ud
}

func (m *luaModule) queue(id int64) lua.LValue {
	if ud := m.queues[id]; ud != nil {
		return ud
	}
	ud := m.L.NewUserData()
	ud.Value = &queueHandle{id: id}
	ud.Metatable = m.queueMeta
	m.queues[id] = ud
	return ud
}

func (m *luaModule) checkInterp(L *lua.LState, n int) *interpHandle {
	return checkHandle[interpHandle](m, L, n, "an interpreter")
}

func (m *luaModule) checkQueue(L *lua.LState, n int) *queueHandle {
	return checkHandle[queueHandle](m, L, n, "a queue")
}

// checkHandle returns argument n as a handle of type H, or raises a
// TypeError saying what was expected: most often a method called with a
// dot instead of a colon.
func checkHandle[H any](m *luaModule, L *lua.LState, n int, expected string) *H {
	if ud, ok := L.Get(n).(*lua.LUserData); ok {
		if h, ok := ud.Value.(*H); ok {
			return h
		}
	}
	m.raiseType(L, "TypeError", "argument #%d must be %s handle (call methods as h:method()), got %s", n, expected, L.Get(n).Type())
	return nil
}

// checkString returns argument n, a string, or raises a TypeError naming
// it what.
func (m *luaModule) checkString(L *lua.LState, n int, what string) string {
	s, ok := L.Get(n).(lua.LString)
	if !ok {
		m.raiseType(L, "TypeError", "%s must be a string, got %s", what, L.Get(n).Type())
	}
	return string(s)
}

func (m *luaModule) create(L *lua.LState) int {
	var id int64
	m.decode(L, m.request(L, protocol.MethodInterpCreate, nil), &id)
	L.Push(m.interp(id))
	return 1
}

func (m *luaModule) getCurrent(L *lua.LState) int {
	L.Push(m.interp(m.w.cfg.InterpreterID))
	return 1
}

func (m *luaModule) getMain(L *lua.LState) int {
	L.Push(m.interp(0))
	return 1
}

func (m *luaModule) listAll(L *lua.LState) int {
	var ids []int64
	m.decode(L, m.request(L, protocol.MethodInterpList, nil), &ids)
	t := L.CreateTable(len(ids), 0)
	for i, id := range ids {
		t.RawSetInt(i+1, m.interp(id))
	}
	L.Push(t)
	return 1
}

func (m *luaModule) lookupInterp(L *lua.LState) int {
	id := m.checkID(L, 1)
	var ok bool
	m.decode(L, m.request(L, protocol.MethodInterpExists, &protocol.IDParams{ID: id}), &ok)
	if !ok {
		m.raiseType(L, "InterpreterNotFoundError", "unrecognized interpreter ID %d", id)
	}
	L.Push(m.interp(id))
	return 1
}

func (m *luaModule) interpWhence(L *lua.LState) int {
	if m.checkInterp(L, 1).id == 0 {
		L.Push(lua.LString("runtime init"))
	} else {
		L.Push(lua.LString("_interpreters module"))
	}
	return 1
}

func (m *luaModule) interpIsRunning(L *lua.LState) int {
	h := m.checkInterp(L, 1)
	var running bool
	m.decode(L, m.request(L, protocol.MethodInterpRunning, &protocol.IDParams{ID: h.id}), &running)
	L.Push(lua.LBool(running))
	return 1
}

func (m *luaModule) interpExec(L *lua.LState) int {
	h := m.checkInterp(L, 1)
	src := m.checkString(L, 2, "the source")
	m.request(L, protocol.MethodInterpExec, &protocol.InterpExecParams{ID: h.id, Source: src})
	return 0
}

func (m *luaModule) interpCall(L *lua.LState) int {
	h := m.checkInterp(L, 1)
	fn := m.checkString(L, 2, "the function expression")
	args := make([]lua.LValue, 0, L.GetTop()-2)
	for i := 3; i <= L.GetTop(); i++ {
		args = append(args, L.Get(i))
	}
	codec := m.codec()
	raw, err := codec.MarshalList(args)
	if err != nil {
		m.raise(L, err)
	}
	res := m.request(L, protocol.MethodInterpCall, &protocol.InterpCallParams{ID: h.id, Fn: fn, Args: raw})
	vs, err := codec.UnmarshalList(L, res)
	if err != nil {
		m.raise(L, err)
	}
	for _, v := range vs {
		L.Push(v)
	}
	return len(vs)
}

func (m *luaModule) interpPrepareMain(L *lua.LState) int {
	h := m.checkInterp(L, 1)
	t, ok := L.Get(2).(*lua.LTable)
	if !ok {
		m.raiseType(L, "TypeError", "the namespace must be a table, got %s", L.Get(2).Type())
	}
	codec := m.codec()
	var bad error
	t.ForEach(func(k, v lua.LValue) {
		if bad == nil && !codec.IsShareable(v) {
			bad = protocol.Errorf(protocol.CodeNotShareable, "%s: a %s is not shareable", lua.LVAsString(k), v.Type())
		}
	})
	if bad != nil {
		m.raise(L, bad)
	}
	raw, err := codec.Marshal(t)
	if err != nil {
		m.raise(L, err)
	}
	m.request(L, protocol.MethodInterpPrepare, &protocol.InterpPrepareParams{ID: h.id, Names: raw})
	return 0
}

func (m *luaModule) interpClose(L *lua.LState) int {
	h := m.checkInterp(L, 1)
	m.request(L, protocol.MethodInterpClose, &protocol.IDParams{ID: h.id})
	return 0
}

func (m *luaModule) isShareable(L *lua.LState) int {
	L.Push(lua.LBool(m.codec().IsShareable(L.Get(1))))
	return 1
}

// unboundMode reads an unbounditems value: one of the module's constants.
func (m *luaModule) unboundMode(L *lua.LState, v lua.LValue) protocol.UnboundMode {
	if v == lua.LNil {
		return 0
	}
	for mode, t := range m.modes {
		if t != nil && v == lua.LValue(t) {
			return protocol.UnboundMode(mode)
		}
	}
	m.raiseType(L, "ValueError", "unsupported unbounditems value %s", v.String())
	return 0
}

// opts reads an options table {timeout = seconds, unbounditems = mode}.
func (m *luaModule) opts(L *lua.LState, n int) (timeout time.Duration, mode protocol.UnboundMode) {
	v := L.Get(n)
	if v == lua.LNil {
		return 0, 0
	}
	t, ok := v.(*lua.LTable)
	if !ok {
		m.raiseType(L, "TypeError", "options must be a table, got %s", v.Type())
	}
	if tv := t.RawGetString("timeout"); tv != lua.LNil {
		secs, ok := tv.(lua.LNumber)
		if !ok || float64(secs) < 0 || math.IsNaN(float64(secs)) {
			m.raiseType(L, "ValueError", "timeout must be a non-negative number")
		}
		timeout = time.Duration(float64(secs) * float64(time.Second))
		if timeout == 0 {
			timeout = 1 // a zero timeout still blocks for no time at all
		}
	}
	return timeout, m.unboundMode(L, t.RawGetString("unbounditems"))
}

func (m *luaModule) createQueue(L *lua.LState) int {
	maxsize := 0
	if v := L.Get(1); v != lua.LNil {
		n, ok := v.(lua.LNumber)
		if !ok || float64(n) != math.Trunc(float64(n)) {
			m.raiseType(L, "TypeError", "maxsize must be an int, got %s", v.Type())
		}
		maxsize = int(n)
	}
	mode := protocol.UnboundReplace
	if t, ok := L.Get(2).(*lua.LTable); ok {
		if md := m.unboundMode(L, t.RawGetString("unbounditems")); md != 0 {
			mode = md
		}
	}
	var id int64
	m.decode(L, m.request(L, protocol.MethodQueueCreate, &protocol.QueueCreateParams{MaxSize: maxsize, Unbound: mode}), &id)
	L.Push(m.queueOf(id, maxsize))
	return 1
}

func (m *luaModule) queueInfo(L *lua.LState, id int64) protocol.QueueInfo {
	var info protocol.QueueInfo
	m.decode(L, m.request(L, protocol.MethodQueueInfo, &protocol.IDParams{ID: id}), &info)
	if ud := m.queues[id]; ud != nil {
		h := ud.Value.(*queueHandle)
		h.maxsize, h.known = info.MaxSize, true
	}
	return info
}

func (m *luaModule) lookupQueue(L *lua.LState) int {
	id := m.checkID(L, 1)
	info := m.queueInfo(L, id) // raises QueueNotFoundError
	L.Push(m.queueOf(id, info.MaxSize))
	return 1
}

// queueOf is m.queue(id) for a queue whose maxsize is known.
func (m *luaModule) queueOf(id int64, maxsize int) lua.LValue {
	ud := m.queue(id)
	h := ud.(*lua.LUserData).Value.(*queueHandle)
	h.maxsize, h.known = maxsize, true
	return ud
}

// maxsize is h's maxsize, asked of the supervisor the first time.
func (m *luaModule) maxsize(L *lua.LState, h *queueHandle) int {
	if !h.known {
		m.queueInfo(L, h.id)
	}
	return h.maxsize
}

func (m *luaModule) queueMaxSize(L *lua.LState) int {
	L.Push(lua.LNumber(m.maxsize(L, m.checkQueue(L, 1))))
	return 1
}

func (m *luaModule) queueQSize(L *lua.LState) int {
	L.Push(lua.LNumber(m.queueInfo(L, m.checkQueue(L, 1).id).Size))
	return 1
}

func (m *luaModule) queueEmpty(L *lua.LState) int {
	L.Push(lua.LBool(m.queueInfo(L, m.checkQueue(L, 1).id).Size == 0))
	return 1
}

func (m *luaModule) queueFull(L *lua.LState) int {
	info := m.queueInfo(L, m.checkQueue(L, 1).id)
	L.Push(lua.LBool(info.MaxSize > 0 && info.Size >= info.MaxSize))
	return 1
}

func (m *luaModule) queuePut(L *lua.LState, block bool) int {
	h := m.checkQueue(L, 1)
	raw, err := m.codec().Marshal(L.Get(2))
	if err != nil {
		m.raise(L, err)
	}
	timeout, mode := m.opts(L, 3)
	params := &protocol.QueuePutParams{ID: h.id, Value: raw, Unbound: mode, Block: block, TimeoutNs: int64(timeout)}
	if m.maxsize(L, h) <= 0 {
		// A put into an unbounded queue cannot wait, and cannot fail while
		// the supervisor keeps the queue for this interpreter's handle,
		// which it does until the interpreter ends: the script goes on
		// without a round trip. Should it fail, the call fails.
		if err := m.w.tell(protocol.MethodQueuePut, params); err != nil {
			m.raise(L, err)
		}
		return 0
	}
	m.request(L, protocol.MethodQueuePut, params)
	return 0
}

func (m *luaModule) queueGet(L *lua.LState, block bool) int {
	h := m.checkQueue(L, 1)
	var timeout time.Duration
	if block {
		timeout, _ = m.opts(L, 2)
	}
	var res protocol.QueueGetResult
	m.decode(L, m.request(L, protocol.MethodQueueGet, &protocol.QueueGetParams{ID: h.id, Block: block, TimeoutNs: int64(timeout)}), &res)
	if res.Unbound {
		L.Push(m.modes[protocol.UnboundReplace])
		return 1
	}
	v, err := m.codec().Unmarshal(L, res.Item())
	if err != nil {
		m.raise(L, err)
	}
	L.Push(v)
	return 1
}
