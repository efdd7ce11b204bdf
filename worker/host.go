package worker

import (
	"context"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// openHost is require("host"): one Lua function per host function the
// interpreter was given, each a request to the supervisor on the call
// channel, served by the goroutine that waits for the running call.
func (m *luaModule) openHost(L *lua.LState) int {
	t := L.CreateTable(0, len(m.w.cfg.HostFuncs))
	for _, name := range m.w.cfg.HostFuncs {
		t.RawSetString(name, L.NewFunction(func(L *lua.LState) int { return m.hostCall(L, name) }))
	}
	L.Push(t)
	return 1
}

// hostCall calls host function name with the Lua arguments. Arguments that
// cannot cross raise NotShareableError before the host hears of the call;
// the host's failure raises HostError.
func (m *luaModule) hostCall(L *lua.LState, name string) int {
	codec := m.codec()
	n := L.GetTop()
	args := make([]lua.LValue, n)
	for i := range args {
		args[i] = L.Get(i + 1)
	}
	raw, err := codec.MarshalList(args)
	if err != nil {
		m.raise(L, err)
	}
	res, err := m.w.request(protocol.MethodHostCall, &protocol.HostCallParams{Name: name, Args: raw})
	if err != nil {
		m.hostFailed(L, err)
	}
	vs, err := codec.UnmarshalList(L, res)
	if err != nil {
		m.raise(L, err)
	}
	for _, v := range vs {
		L.Push(v)
	}
	return len(vs)
}

// hostFailed raises the failure of a host call. One the supervisor ended
// because the call is ending (cancelled, or past the deadline its clock saw
// first) is not the script's to catch: the VM waits, boundedly, for its
// own word that the call is over, and stops with that.
func (m *luaModule) hostFailed(L *lua.LState, err error) {
	e := protocol.AsError(err)
	ctx := L.Context()
	if ctx != nil && (e.Code == protocol.CodeCanceled || e.Code == protocol.CodeDeadlineExceeded) {
		t := time.NewTimer(callEndWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if ctx != nil && ctx.Err() != nil {
		L.RaiseError("%s", context.Cause(ctx)) // the VM reports why the call ended
	}
	m.raise(L, err)
}

// callEndWait bounds how long a VM waits to hear that its call ended after
// the supervisor said so.
const callEndWait = time.Second

// addHostModules makes each host module of the interpreter loadable. Its
// source is asked for at its first require, and runs as a chunk named after
// the module with the globals as its environment.
func (m *luaModule) addHostModules(vm *VM) {
	for _, name := range m.w.cfg.Modules {
		vm.AddModule(name, m.loadHostModule)
	}
}

func (m *luaModule) loadHostModule(L *lua.LState) int {
	name := L.CheckString(1)
	var src string
	m.decode(L, m.request(L, protocol.MethodHostModule, &protocol.NameParams{Name: name}), &src)
	p, perr := m.w.vm.compile("chunk", name, src)
	if perr != nil {
		L.RaiseError("error loading module '%s': %s", name, perr.Msg)
	}
	L.Push(L.NewFunctionFromProto(p))
	L.Push(lua.LString(name))
	L.Call(1, 1)
	return 1
}
