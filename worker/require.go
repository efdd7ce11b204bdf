package worker

import (
	lua "github.com/yuin/gopher-lua"
)

// installPackage gives the sandbox the part of Lua 5.1's package library
// that reaches no file: package.loaded, package.preload, and a require that
// looks in those two only. The standard libraries are in package.loaded, as
// in Lua.
func (vm *VM) installPackage() {
	L := vm.l
	G := L.G.Global
	libs := []string{lua.BaseLibName, lua.TabLibName, lua.StringLibName, lua.MathLibName, lua.CoroutineLibName, lua.IoLibName, lua.OsLibName}
	pkg := L.CreateTable(0, 2)
	loaded := L.CreateTable(0, len(libs))
	for _, n := range libs {
		if n == lua.BaseLibName {
			loaded.RawSetString("_G", G)
		} else if t, ok := G.RawGetString(n).(*lua.LTable); ok {
			loaded.RawSetString(n, t)
		}
	}
	vm.preload = L.CreateTable(0, len(vm.modules))
	vm.loading = L.CreateTable(0, 1)
	pkg.RawSetString("loaded", loaded)
	pkg.RawSetString("preload", vm.preload)
	G.RawSetString("package", pkg)
	G.RawSetString("require", L.NewFunction(func(L *lua.LState) int { return vm.require(L, loaded) }))
	for n, loader := range vm.modules {
		vm.AddModule(n, loader)
	}
}

// AddModule makes loader what require(name) runs the first time: an entry
// of package.preload. The worker adds its host's modules this way once it
// knows which interpreter it is.
func (vm *VM) AddModule(name string, loader lua.LGFunction) {
	vm.preload.RawSetString(name, vm.l.NewFunction(loader))
}

// require is the sandbox's require: package.loaded, then package.preload,
// as Lua 5.1's require without its file loaders. A loader that fails
// leaves nothing behind, so a later require tries again.
func (vm *VM) require(L *lua.LState, loaded *lua.LTable) int {
	name := L.CheckString(1)
	if !moduleNameRE.MatchString(name) {
		L.RaiseError("invalid module name '%s'", name)
	}
	if v := loaded.RawGetString(name); v != lua.LNil {
		if v == vm.loading {
			L.RaiseError("loop or previous error loading module '%s'", name)
		}
		L.Push(v)
		return 1
	}
	loader := vm.preload.RawGetString(name)
	if loader == lua.LNil {
		L.RaiseError("module '%s' not found", name)
	}
	loaded.RawSetString(name, vm.loading)
	defer func() {
		if loaded.RawGetString(name) == vm.loading {
			loaded.RawSetString(name, lua.LNil)
		}
	}()
	L.Push(loader)
	L.Push(lua.LString(name))
	L.Call(1, 1)
	v := L.Get(-1)
	L.Pop(1)
	if v == lua.LNil {
		// A module may have set package.loaded[name] itself, as in Lua.
		if v = loaded.RawGetString(name); v == lua.LNil || v == vm.loading {
			v = lua.LTrue
		}
	}
	loaded.RawSetString(name, v)
	L.Push(v)
	return 1
}
