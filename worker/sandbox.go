package worker

import (
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"runtime/metrics"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

const (
	// maxRepResult caps string.rep: it is one Go allocation that no
	// interrupt can stop.
	maxRepResult = 64 << 20
	// maxOutputBuffer is the largest write buffer kept between writes.
	maxOutputBuffer = 64 << 10
	// maxResults caps the values unpack and string.byte push in one call:
	// past the registry's room gopher-lua cannot even run the error
	// handler, and the worker dies. C Lua refuses such calls too.
	maxResults = 1 << 18
)

// moduleNameRE is what require accepts: no paths, nothing to escape.
var moduleNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// sandboxRemoved are the base-library globals an untrusted script must not
// have: file access (dofile, loadfile), the package machinery (require and
// module, replaced by our require), compilation without our guards (load,
// loadstring) and debugging output to the process stdout (_printregs).
var sandboxRemoved = []string{"dofile", "loadfile", "load", "loadstring", "module", "_printregs", "require"}

// gopher-lua's os.date, os.time and os.difftime are safe and only read
// their arguments, so the sandbox borrows them from a state that opened the
// os library instead of opening it (which would bring execute and exit).
var gopherOS = sync.OnceValue(func() map[string]lua.LGFunction {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	L.Push(L.NewFunction(lua.OpenOs))
	L.Push(lua.LString(lua.OsLibName))
	L.Call(1, 0)
	fns := make(map[string]lua.LGFunction)
	if t, ok := L.GetGlobal(lua.OsLibName).(*lua.LTable); ok {
		for _, n := range []string{"date", "time", "difftime"} {
			if f, ok := t.RawGetString(n).(*lua.LFunction); ok && f.IsG {
				fns[n] = f.GFunction
			}
		}
	}
	return fns
})

// install opens the libraries and applies the replacements both modes
// share; the sandbox then strips what untrusted code must not reach.
func (vm *VM) install() {
	L := vm.l
	if vm.cfg.Stdlib {
		L.OpenLibs()
	} else {
		for _, lib := range []struct {
			name string
			open lua.LGFunction
		}{
			{lua.BaseLibName, lua.OpenBase},
			{lua.TabLibName, lua.OpenTable},
			{lua.StringLibName, lua.OpenString},
			{lua.MathLibName, lua.OpenMath},
			{lua.CoroutineLibName, lua.OpenCoroutine},
		} {
			L.Push(L.NewFunction(lib.open))
			L.Push(lua.LString(lib.name))
			L.Call(1, 0)
		}
	}
	G := L.G.Global

	vm.errMeta = L.CreateTable(0, 1)
	vm.errMeta.RawSetString("__tostring", L.NewFunction(errorToString))

	G.RawSetString("error", L.NewFunction(baseError))
	G.RawSetString("pcall", L.NewFunction(vm.basePCall))
	G.RawSetString("xpcall", L.NewFunction(vm.baseXPCall))
	G.RawSetString("print", L.NewFunction(vm.basePrint))

	co := tableField(G, lua.CoroutineLibName)
	vm.origResume = gfunc(co, "resume")
	vm.origWrap = gfunc(co, "wrap")
	vm.origYield = gfunc(co, "yield")
	co.RawSetString("resume", L.NewFunction(vm.coResume))
	co.RawSetString("yield", L.NewFunction(vm.coYield))
	co.RawSetString("wrap", L.NewFunction(vm.coWrap))
	co.RawSetString("running", L.NewFunction(coRunning))

	m := tableField(G, lua.MathLibName)
	m.RawSetString("huge", lua.LNumber(math.Inf(1)))
	m.RawSetString("random", L.NewFunction(vm.mathRandom))
	m.RawSetString("randomseed", L.NewFunction(vm.mathRandomSeed))

	s := tableField(G, lua.StringLibName)
	s.RawSetString("rep", L.NewFunction(vm.strRep))
	s.RawSetString("byte", L.NewFunction(capResults(gfunc(s, "byte"), strByteCount, "string slice too long")))
	G.RawSetString("unpack", L.NewFunction(capResults(gfunc(G, "unpack"), unpackCount, "too many results to unpack")))
	tableField(G, lua.TabLibName).RawSetString("concat", L.NewFunction(tableConcat))

	if vm.cfg.Stdlib {
		vm.installStdlib()
	} else {
		vm.installSandbox()
	}
	vm.requireFn, _ = G.RawGetString("require").(*lua.LFunction)
}

func (vm *VM) installSandbox() {
	L := vm.l
	G := L.G.Global
	for _, n := range sandboxRemoved {
		G.RawSetString(n, lua.LNil)
	}
	G.RawSetString("collectgarbage", L.NewFunction(collectGarbage))

	io := L.CreateTable(0, 1)
	io.RawSetString("write", L.NewFunction(vm.ioWrite))
	G.RawSetString(lua.IoLibName, io)

	osFuncs := gopherOS()
	os := L.CreateTable(0, len(osFuncs)+2)
	for n, f := range osFuncs {
		os.RawSetString(n, L.NewFunction(f))
	}
	os.RawSetString("clock", L.NewFunction(osClock))
	os.RawSetString("exit", L.NewFunction(vm.osExit))
	G.RawSetString(lua.OsLibName, os)
	vm.installPackage()
}

// installStdlib keeps the full library but still routes output to Output,
// keeps os.exit from ending the worker, and offers the preloaded modules
// through package.preload next to the files require finds.
func (vm *VM) installStdlib() {
	L := vm.l
	G := L.G.Global
	vm.installStdio()
	tableField(G, lua.DebugLibName).RawSetString("traceback", L.NewFunction(vm.debugTraceback))

	os := tableField(G, lua.OsLibName)
	os.RawSetString("clock", L.NewFunction(osClock))
	os.RawSetString("exit", L.NewFunction(vm.osExit))

	// Same compiler guards as Exec: deep nesting is a fatal error in
	// gopher-lua's compiler, whoever wrote the script.
	G.RawSetString("loadstring", L.NewFunction(vm.loadString))
	G.RawSetString("load", L.NewFunction(vm.load))

	vm.preload = tableField(tableField(G, "package"), "preload")
	for n, loader := range vm.modules {
		vm.AddModule(n, loader)
	}
}

func tableField(t *lua.LTable, name string) *lua.LTable {
	v, ok := t.RawGetString(name).(*lua.LTable)
	if !ok {
		panic("worker: the " + name + " library is missing")
	}
	return v
}

func gfunc(t *lua.LTable, name string) lua.LGFunction {
	f, ok := t.RawGetString(name).(*lua.LFunction)
	if !ok || !f.IsG {
		panic("worker: " + name + " is not a Go function")
	}
	return f.GFunction
}

func returnSelf(L *lua.LState) int {
	L.SetTop(1)
	return 1
}

// errorToString is the __tostring of the error tables the VM raises.
func errorToString(L *lua.LState) int {
	t := L.CheckTable(1)
	L.Push(lua.LString(lua.LVAsString(t.RawGetString("type")) + ": " + lua.LVAsString(t.RawGetString("msg"))))
	return 1
}

// raiseTyped raises {type = typ, msg = msg}, which the caller sees as an
// error of that type.
func (vm *VM) raiseTyped(L *lua.LState, typ, msg string) {
	t := L.CreateTable(0, 2)
	t.RawSetString("type", lua.LString(typ))
	t.RawSetString("msg", lua.LString(msg))
	t.Metatable = vm.errMeta
	L.Error(t, 1)
}

// emit hands p to Output. An error becomes a Lua error; a *protocol.Error
// (the output limit) is also kept, so the call fails with it even when the
// script catches the Lua error.
func (vm *VM) emit(L *lua.LState, p []byte) {
	if vm.cfg.Output == nil || len(p) == 0 {
		return
	}
	err := vm.cfg.Output(p)
	if cap(vm.outBuf) > maxOutputBuffer {
		vm.outBuf = nil
	}
	if err == nil {
		return
	}
	var pe *protocol.Error
	if vm.outErr == nil && errors.As(err, &pe) {
		vm.outErr = pe
	}
	L.RaiseError("%s", err.Error())
}

// baseError replaces error. gopher-lua joins the position and the message
// with a space even when a level past the stack gives no position, so
// error("x", 1e9) raised " x"; as in Lua 5.1 it raises "x".
func baseError(L *lua.LState) int {
	obj := L.CheckAny(1)
	level := L.OptInt(2, 1)
	if s, ok := obj.(lua.LString); ok && level > 0 {
		if where := L.Where(level); where != "" {
			obj = lua.LString(where + " " + string(s))
		}
		level = 0
	}
	L.Error(obj, level)
	return 0
}

func (vm *VM) basePrint(L *lua.LState) int {
	// Converting first: __tostring runs Lua code, which may print too.
	top := L.GetTop()
	var small [8]string
	strs := small[:0]
	for i := 1; i <= top; i++ {
		strs = append(strs, L.ToStringMeta(L.Get(i)).String())
	}
	buf := vm.outBuf[:0]
	for i, s := range strs {
		if i > 0 {
			buf = append(buf, '\t')
		}
		buf = append(buf, s...)
	}
	buf = append(buf, '\n')
	vm.outBuf = buf[:0]
	vm.emit(L, buf)
	return 0
}

func (vm *VM) writeArgs(L *lua.LState, first int) {
	top := L.GetTop()
	buf := vm.outBuf[:0]
	for i := first; i <= top; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			buf = append(buf, v...)
		case lua.LNumber:
			buf = append(buf, v.String()...)
		default:
			L.ArgError(i-first+1, "string expected, got "+v.Type().String())
		}
	}
	vm.outBuf = buf[:0]
	vm.emit(L, buf)
}

// ioWrite is io.write: strings and numbers, written as they are.
func (vm *VM) ioWrite(L *lua.LState) int {
	vm.writeArgs(L, 1)
	return 0
}

// fileWrite is io.stdout:write; it returns the file so calls chain.
func (vm *VM) fileWrite(L *lua.LState) int {
	vm.writeArgs(L, 2)
	L.SetTop(1)
	return 1
}

// osExit raises SystemExit instead of ending the worker process; the call
// fails with it unless the script catches it.
func (vm *VM) osExit(L *lua.LState) int {
	code := "0"
	switch v := L.Get(1).(type) {
	case *lua.LNilType:
	case lua.LBool:
		if !v {
			code = "1"
		}
	case lua.LNumber, lua.LString:
		code = lua.LVAsString(v)
	default:
		code = v.String()
	}
	vm.raiseTyped(L, "SystemExit", code)
	return 0
}

// osClock is the process's CPU time; gopher-lua's counts wall time.
func osClock(L *lua.LState) int {
	L.Push(lua.LNumber(cpuSeconds()))
	return 1
}

// collectGarbage is the sandbox's collectgarbage: gopher-lua's runs a full
// process GC on every call, so a loop of them burns the CPU.
func collectGarbage(L *lua.LState) int {
	if L.OptString(1, "collect") == "count" {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		var kb float64
		if s[0].Value.Kind() == metrics.KindUint64 {
			kb = float64(s[0].Value.Uint64()) / 1024
		}
		L.Push(lua.LNumber(kb))
		return 1
	}
	L.Push(lua.LNumber(0))
	return 1
}

// mathRandom is math.random over the VM's own generator: gopher-lua uses
// the process-global one, which randomseed cannot seed since Go 1.24.
func (vm *VM) mathRandom(L *lua.LState) int {
	var lo, hi float64
	switch L.GetTop() {
	case 0:
		L.Push(lua.LNumber(vm.rng.Float64()))
		return 1
	case 1:
		lo, hi = 1, math.Trunc(float64(L.CheckNumber(1)))
		if lo > hi {
			L.ArgError(1, "interval is empty")
		}
	case 2:
		lo, hi = math.Trunc(float64(L.CheckNumber(1))), math.Trunc(float64(L.CheckNumber(2)))
		if lo > hi {
			L.ArgError(2, "interval is empty")
		}
	default:
		L.RaiseError("wrong number of arguments")
	}
	span := hi - lo + 1
	if !(span <= protocol.MaxSafeInt) {
		L.RaiseError("interval is too large")
	}
	L.Push(lua.LNumber(lo + float64(vm.rng.Int64N(int64(span)))))
	return 1
}

func (vm *VM) mathRandomSeed(L *lua.LState) int {
	f := float64(L.CheckNumber(1))
	seed := int64(math.Float64bits(f))
	if f == math.Trunc(f) && math.Abs(f) < 1<<62 {
		seed = int64(f)
	}
	vm.rng = rand.New(rand.NewPCG(uint64(seed), 0))
	return 0
}

// capResults wraps a builtin that pushes count(L) values so that it
// raises msg instead when that is more than maxResults.
func capResults(f lua.LGFunction, count func(*lua.LState) float64, msg string) lua.LGFunction {
	return func(L *lua.LState) int {
		if count(L) > maxResults {
			L.RaiseError("%s", msg)
		}
		return f(L)
	}
}

// unpackCount is how many values unpack(t [, i [, j]]) pushes.
func unpackCount(L *lua.LState) float64 {
	t := L.CheckTable(1)
	i := float64(L.OptInt(2, 1))
	j := float64(L.OptInt(3, t.Len()))
	return j - i + 1
}

// strByteCount is how many values gopher-lua's string.byte(s [, i [, j]])
// pushes (all the bytes from i when j is absent).
func strByteCount(L *lua.LState) float64 {
	l := len(L.CheckString(1))
	if L.GetTop() == 2 {
		return 1
	}
	i := L.OptInt(2, 1) - 1
	j := L.OptInt(3, -1)
	if i < 0 {
		i = l + i + 1
	}
	if j < 0 {
		j = l + j + 1
	}
	return float64(min(j, l)) - float64(max(i, 0))
}

// tableConcat is table.concat with gopher-lua's argument handling, built
// without pushing every piece on the registry: gopher-lua's pushes them
// all, and a table of a million strings overflows the registry in a way
// that kills the worker.
func tableConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	n := t.Len()
	i := L.OptInt(3, 1)
	j := L.OptInt(4, n)
	if L.GetTop() == 3 && (i > n || i < 1) {
		L.Push(lua.LString(""))
		return 1
	}
	i = max(min(i, n), 1)
	j = min(j, n)
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	parts := make([]string, 0, j-i+1)
	for k := i; k <= j; k++ {
		v := t.RawGetInt(k)
		if !lua.LVCanConvToString(v) {
			L.RaiseError("invalid value (%s) at index %d in table for concat", v.Type().String(), k)
		}
		parts = append(parts, lua.LVAsString(v))
	}
	L.Push(lua.LString(strings.Join(parts, sep)))
	return 1
}

// moduleNotFound reports whether msg is require's "no such module", ours
// or package's.
func moduleNotFound(msg, name string) bool {
	return strings.Contains(msg, "module '"+name+"' not found") ||
		strings.Contains(msg, "module "+name+" not found")
}

// loadString is loadstring for the full library, behind Exec's guards.
func (vm *VM) loadString(L *lua.LState) int {
	src := L.CheckString(1)
	name := L.OptString(2, "<string>")
	return vm.pushCompiled(L, src, name)
}

// load is load(reader [, chunkname]) for the full library.
func (vm *VM) load(L *lua.LState) int {
	reader := L.CheckFunction(1)
	name := L.OptString(2, "=(load)")
	var b strings.Builder
	for {
		L.Push(reader)
		L.Call(0, 1)
		piece := L.Get(-1)
		L.Pop(1)
		s, ok := piece.(lua.LString)
		if piece == lua.LNil || (ok && s == "") {
			break
		}
		if !ok {
			L.Push(lua.LNil)
			L.Push(lua.LString("reader function must return a string"))
			return 2
		}
		if b.Len()+len(s) > maxSourceSize {
			L.Push(lua.LNil)
			L.Push(lua.LString("source too large"))
			return 2
		}
		b.WriteString(string(s))
	}
	return vm.pushCompiled(L, b.String(), name)
}

func (vm *VM) pushCompiled(L *lua.LState, src, name string) int {
	p, perr := vm.compile("chunk", name, src)
	if perr != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(perr.Msg))
		return 2
	}
	L.Push(L.NewFunctionFromProto(p))
	return 1
}
