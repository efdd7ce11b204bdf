package worker

import (
	"os"

	lua "github.com/yuin/gopher-lua"
)

// installStdio makes a trusted script's standard output the VM's Output
// while keeping the io library whole. io.stdout stays gopher-lua's own file
// object (io.type says "file", io.output accepts it), but its methods that
// would touch the worker's real stdout write to Output instead, under the
// same limits as print; io.write writes to Output while the default output
// is io.stdout, and to the file io.output chose otherwise.
func (vm *VM) installStdio() {
	L := vm.l
	io := tableField(L.G.Global, lua.IoLibName)
	if open, ok := io.RawGetString("open").(*lua.LFunction); ok {
		io.RawSetString("tmpfile", L.NewFunction(func(L *lua.LState) int { return tmpfile(L, open) }))
	}
	stdout, ok := io.RawGetString("stdout").(*lua.LUserData)
	origWrite, ok2 := io.RawGetString("write").(*lua.LFunction)
	origOutput, ok3 := io.RawGetString("output").(*lua.LFunction)
	if !ok || !ok2 || !ok3 {
		// Not gopher-lua's io library as audited: a table that writes to
		// Output is the next best io.stdout.
		t := L.CreateTable(0, 3)
		t.RawSetString("write", L.NewFunction(vm.fileWrite))
		t.RawSetString("flush", L.NewFunction(returnSelf))
		t.RawSetString("setvbuf", L.NewFunction(returnSelf))
		io.RawSetString("stdout", t)
		io.RawSetString("write", L.NewFunction(vm.ioWrite))
		return
	}

	methods := L.CreateTable(0, 8)
	if mt, ok := L.GetMetatable(stdout).(*lua.LTable); ok {
		if idx, ok := mt.RawGetString("__index").(*lua.LTable); ok {
			idx.ForEach(func(k, v lua.LValue) { methods.RawSet(k, v) })
		}
	}
	methods.RawSetString("write", L.NewFunction(vm.fileWrite))
	methods.RawSetString("flush", L.NewFunction(returnSelf))
	methods.RawSetString("setvbuf", L.NewFunction(returnSelf))
	methods.RawSetString("close", L.NewFunction(closeStdFile))
	mt := L.CreateTable(0, 4)
	if orig, ok := L.GetMetatable(stdout).(*lua.LTable); ok {
		orig.ForEach(func(k, v lua.LValue) { mt.RawSet(k, v) })
	}
	mt.RawSetString("__index", methods)
	stdout.Metatable = mt

	io.RawSetString("write", L.NewFunction(func(L *lua.LState) int {
		top := L.GetTop()
		L.Push(origOutput)
		L.Call(0, 1)
		out := L.Get(-1)
		L.Pop(1)
		if out != stdout {
			L.Insert(origWrite, 1)
			L.Call(top, lua.MultRet)
			return L.GetTop()
		}
		vm.writeArgs(L, 1)
		L.Push(lua.LTrue)
		return 1
	}))
}

// closeStdFile is io.stdout:close: as in Lua 5.1, a standard file is not
// closed (here it would be the worker's own stdout).
func closeStdFile(L *lua.LState) int {
	L.Push(lua.LNil)
	L.Push(lua.LString("cannot close standard file"))
	return 2
}

// tmpfile is io.tmpfile as C Lua's: a file open for update whose name is
// gone at once, so nothing is left in the temporary directory when it is
// closed or the worker ends (gopher-lua's stays behind). open is io.open.
func tmpfile(L *lua.LState, open *lua.LFunction) int {
	f, err := os.CreateTemp("", "lua_")
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	top := L.GetTop()
	L.Push(open)
	L.Push(lua.LString(name))
	L.Push(lua.LString("w+"))
	L.Call(2, lua.MultRet)
	return L.GetTop() - top
}
