package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// tostringTimeout bounds the __tostring of an error object, which is Lua
// code run after the call has ended.
const tostringTimeout = 100 * time.Millisecond

// VMConfig configures a VM. The zero value is a sandboxed VM that discards
// output.
type VMConfig struct {
	// Stdlib opens the full gopher-lua standard library (io, os, package,
	// debug, channel) for trusted scripts. print, io.write and io.stdout
	// still go to Output, os.exit still only fails the call, and require
	// finds both files and Modules.
	Stdlib bool
	// Output receives the bytes print and io.write produce, on the VM
	// goroutine, in order. Like io.Writer.Write it must not keep p. A
	// non-nil error is raised as a Lua error at the print; a *protocol.Error
	// (an output limit) also fails the call as it is, even if the script
	// catches the Lua error. Nil discards output.
	Output func(p []byte) error
	// Codec converts call arguments, results and PrepareMain values; nil
	// means &protocol.LuaCodec{}.
	Codec *protocol.LuaCodec
	// Modules are what require(name) can load besides files (Stdlib) or
	// instead of them (sandbox). A loader is called once, with the module
	// name; its first result (true when nil) is what require returns from
	// then on.
	Modules map[string]lua.LGFunction
	// ChunkName names Exec's chunks in messages and tracebacks; default
	// "<string>".
	ChunkName string
	// MemoryLimit is the interpreter's memory limit in bytes (0: none). An
	// operation whose result alone would pass it (string.rep) is refused
	// with a MemoryError that, uncaught, fails the call as the memory
	// limit does.
	MemoryLimit int64
}

// VM is one gopher-lua state with its sandbox, the fixes gopher-lua needs
// (upvalues after errors, contexts of coroutines, bounded tracebacks, a
// compile-depth guard) and the conversions of the interpreter protocol.
// Its globals are the interpreter's __main__ and persist across calls.
//
// A VM is not safe for concurrent use: one goroutine at a time calls its
// methods and touches L. Only cancelling the context of a running Exec or
// Call may come from another goroutine.
type VM struct {
	cfg     VMConfig
	codec   *protocol.LuaCodec
	modules map[string]lua.LGFunction
	l       *lua.LState
	closed  bool

	errfunc *lua.LFunction // error function of every protected call
	entry   *lua.LFunction // runs a Call's target inside the protected call
	errMeta *lua.LTable    // metatable of the error tables the VM raises

	pstack  []pframe       // protected calls in progress
	threads []*lua.LState  // idle threads for protected calls on the portable route (portable.go)
	refused *lua.LTable    // the MemoryError of the latest operation refused for the memory limit
	liveUV  []*lua.Upvalue // upvalues of frames outside them (see protect)
	protos  *protoCache

	target callTarget // what entry calls

	rng         *rand.Rand  // math.random's: a PCG, 16 bytes where math/rand's source takes 4.9 KB
	preload     *lua.LTable // package.preload as the VM made it
	loading     *lua.LTable // sandbox require: package.loaded's mark of a module being loaded
	requireFn   *lua.LFunction
	origResume  lua.LGFunction
	origWrap    lua.LGFunction
	origWrapAux lua.LGFunction
	origYield   lua.LGFunction

	outBuf []byte
	outErr *protocol.Error // sticky Output failure of the current call

	ic      atomic.Pointer[interruptCtx] // the running call's, for SoftInterrupt
	softErr *protocol.Error              // a soft interrupt ended the call
}

// callTarget is the function a Call names: a path resolved step by step,
// or the compiled expression "return (fn)".
type callTarget struct {
	fn    string
	proto *lua.FunctionProto
}

// NewVM builds a VM. The state has a fixed call stack of 256 frames (deep
// enough for real code, and it keeps tracebacks and coroutines cheap) and
// a registry that grows to 1M slots, so table.concat and unpack of large
// tables work. The tables a VM makes for itself are made with
// CreateTable at the size they hold: gopher-lua's NewTable reserves 32
// array slots and a 32-entry map, about 2.6 KB, in every table.
func NewVM(cfg VMConfig) *VM {
	if cfg.Codec == nil {
		cfg.Codec = &protocol.LuaCodec{}
	}
	if cfg.ChunkName == "" {
		cfg.ChunkName = "<string>"
	}
	mods := make(map[string]lua.LGFunction, len(cfg.Modules))
	for n, f := range cfg.Modules {
		mods[n] = f
	}
	cfg.Modules = nil
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    256,
		RegistrySize:     1024,
		RegistryMaxSize:  1 << 20,
		RegistryGrowStep: 4096,
	})
	vm := &VM{
		cfg:     cfg,
		codec:   cfg.Codec,
		modules: mods,
		l:       L,
		protos:  newProtoCache(),
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
	}
	vm.errfunc = L.NewFunction(vm.onError)
	vm.entry = L.NewFunction(vm.callEntry)
	vm.install()
	L.SetTop(0)
	return vm
}

// L returns the Lua state, for the worker to install its own functions.
// Only the VM goroutine may use it; Lua code it runs inside a call must go
// through ProtectedCall.
func (vm *VM) L() *lua.LState { return vm.l }

// Close releases the state. The VM cannot be used afterwards; Close is
// idempotent.
func (vm *VM) Close() {
	if vm.closed {
		return
	}
	vm.closed = true
	vm.l.Close()
}

// Exec compiles src and runs it with the globals as environment.
// Cancelling ctx interrupts it; the VM stays usable with its globals.
func (vm *VM) Exec(ctx context.Context, src string) error {
	return vm.ExecNamed(ctx, vm.cfg.ChunkName, src)
}

// ExecNamed is Exec with name as the chunk's name in errors and
// tracebacks.
func (vm *VM) ExecNamed(ctx context.Context, name, src string) error {
	if err := vm.begin(ctx); err != nil {
		return err
	}
	L := vm.l
	defer L.SetTop(0)
	p, perr := vm.compile("chunk", name, src)
	if perr != nil {
		return perr
	}
	L.Push(L.NewFunctionFromProto(p))
	return vm.run(ctx, 0, 0)
}

// Call evaluates fn in the globals, calls it with args (a msgpack array
// decoded with Codec) and returns all its results encoded as one msgpack
// array. fn is a global name, a dotted path ("string.upper"; when the first
// name is not a global, require of it is tried) or any expression that
// yields a function, such as a function literal.
func (vm *VM) Call(ctx context.Context, fn string, args []byte) ([]byte, error) {
	if err := vm.begin(ctx); err != nil {
		return nil, err
	}
	L := vm.l
	defer L.SetTop(0)
	t := callTarget{fn: fn}
	if !isNamePath(fn) {
		// The newline keeps a trailing comment in fn from eating the ")".
		p, perr := vm.compile("expr", vm.cfg.ChunkName, "return ("+fn+"\n)")
		if perr != nil {
			return nil, perr
		}
		t.proto = p
	}
	var vals []lua.LValue
	if len(args) > 0 {
		var err error
		if vals, err = vm.codec.UnmarshalList(L, args); err != nil {
			return nil, err
		}
	}
	L.Push(vm.entry)
	for _, v := range vals {
		L.Push(v)
	}
	vm.target = t
	defer func() { vm.target = callTarget{} }()
	if err := vm.run(ctx, len(vals), lua.MultRet); err != nil {
		return nil, err
	}
	n := L.GetTop()
	res := make([]lua.LValue, n)
	for i := range res {
		res[i] = L.Get(i + 1)
	}
	return vm.codec.MarshalList(res)
}

// PrepareMain binds each entry of names (a msgpack map of name → value) as
// a global, all or nothing: every key is checked and every value converted
// before anything is bound. Keys must be Lua names that are not reserved
// words, and the map must not be empty.
func (vm *VM) PrepareMain(names []byte) error {
	if vm.closed {
		return errClosed()
	}
	L := vm.l
	defer L.SetTop(0)
	invalid := func(format string, args ...any) error {
		return protocol.Errorf(protocol.CodeInvalidArgument, format, args...)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(names))
	code, err := dec.PeekCode()
	if err != nil || !(msgpcode.IsFixedMap(code) || code == msgpcode.Map16 || code == msgpcode.Map32) {
		return invalid("prepare_main takes a map of names to values")
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return invalid("prepare_main: %v", err)
	}
	if n <= 0 {
		return invalid("prepare_main needs at least one name")
	}
	type binding struct {
		name string
		v    lua.LValue
	}
	bs := make([]binding, 0, min(n, 1024))
	for range n {
		kc, err := dec.PeekCode()
		if err != nil || !(msgpcode.IsString(kc) || msgpcode.IsBin(kc)) {
			return invalid("prepare_main: names must be strings")
		}
		kb, err := dec.DecodeBytes()
		if err != nil {
			return invalid("prepare_main: %v", err)
		}
		name := string(kb)
		if !isLuaName(name) {
			return invalid("%q is not a valid Lua name", name)
		}
		raw, err := dec.DecodeRaw()
		if err != nil {
			return invalid("prepare_main: value of %q: %v", name, err)
		}
		v, err := vm.codec.Unmarshal(L, raw)
		if err != nil {
			return err
		}
		bs = append(bs, binding{name, v})
	}
	if _, err := dec.PeekCode(); err == nil {
		return invalid("prepare_main: trailing bytes after the map")
	}
	G := L.G.Global
	for _, b := range bs {
		G.RawSetString(b.name, b.v)
	}
	return nil
}

// ProtectedCall calls the function below the nargs arguments on L's stack
// (L is the VM's state or one of its coroutines), as L.PCall would with no
// error function, but keeping the VM's fixes intact. Go functions that call
// back into Lua during a call, catching the errors themselves, must use it
// rather than L.PCall. The error is a *lua.ApiError whose Object is the
// Lua error value.
func (vm *VM) ProtectedCall(L *lua.LState, nargs, nret int) error {
	_, err := vm.protect(L, nargs, nret, nil, false)
	if err != nil {
		checkInterrupt(L)
	}
	return err
}

func errClosed() error {
	return protocol.Errorf(protocol.CodeInterpreter, "the interpreter's VM is closed")
}

func (vm *VM) begin(ctx context.Context) error {
	if vm.closed {
		return errClosed()
	}
	if ctx.Err() != nil {
		return interruptError(ctx)
	}
	return nil
}

func (vm *VM) compile(kind, name, src string) (*lua.FunctionProto, *protocol.Error) {
	cacheable := len(src) <= maxCachedSource
	var key [32]byte
	if cacheable {
		key = protoKey(kind, name, src)
		if p := vm.protos.get(key); p != nil {
			return p, nil
		}
	}
	p, perr := compileLua(src, name)
	if perr != nil {
		return nil, perr
	}
	if cacheable {
		vm.protos.put(key, p)
	}
	return p, nil
}

// run makes the protected call at the top level of Exec and Call, under a
// fresh interrupt context, and maps its failure.
func (vm *VM) run(ctx context.Context, nargs, nret int) error {
	L := vm.l
	vm.outErr = nil
	var tb string
	err := vm.withInterrupt(L, ctx, func() error {
		var err error
		tb, err = vm.protect(L, nargs, nret, nil, true)
		if err != nil {
			vm.softErr = vm.softCause()
		}
		return err
	})
	dropStaleFrames(L)
	vm.dropThreads()
	refused := vm.refused
	vm.refused = nil
	outErr := vm.outErr
	vm.outErr = nil
	soft := vm.softErr
	vm.softErr = nil
	switch {
	case err != nil && soft != nil:
		return soft // a soft limit no pcall caught
	case err != nil && ctx.Err() != nil:
		return interruptError(ctx)
	case outErr != nil:
		return outErr
	case err != nil:
		if ae, ok := err.(*lua.ApiError); ok && tb == "" {
			// The error function could not run (the call stack was full);
			// gopher-lua's own traceback is the next best thing.
			tb = ae.StackTrace
		}
		e := vm.executionFailed(errorObject(err), tb)
		if refused != nil && errorObject(err) == lua.LValue(refused) {
			e.Cause = protocol.CodeMemoryLimit // an operation refused for the memory limit
		}
		return e
	}
	return nil
}

// withInterrupt runs f with L under an interrupt context that follows ctx
// and is closed when f returns.
func (vm *VM) withInterrupt(L *lua.LState, ctx context.Context, f func() error) error {
	vm.ic.Store(armInterrupt(ctx))
	setContext(L, vm.ic.Load())
	err := f()
	L.RemoveContext()
	vm.ic.Swap(nil).disarm()
	return err
}

// interruptError is the error of a call its context ended: the cause when
// the worker set one (a limit), else the context's own error.
func interruptError(ctx context.Context) error {
	var pe *protocol.Error
	if errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return protocol.AsError(ctx.Err())
}

// executionFailed maps an uncaught Lua error value.
func (vm *VM) executionFailed(obj lua.LValue, tb string) *protocol.Error {
	typ, msg := vm.describeError(obj)
	e := &protocol.Error{
		Code:       protocol.CodeExecutionFailed,
		Type:       typ,
		Msg:        msg,
		Formatted:  typ + ": " + msg,
		Errdisplay: tb,
	}
	// A script picks its error's size; the host gets the first MiB of each
	// text.
	return e.Clipped(1 << 20)
}

// describeError names an error value: a string is a LuaError with that
// message; a table gives its type field (default LuaError) and its msg or
// message field, else its __tostring.
func (vm *VM) describeError(obj lua.LValue) (typ, msg string) {
	typ = "LuaError"
	switch v := obj.(type) {
	case lua.LString:
		return typ, string(v)
	case lua.LNumber:
		return typ, v.String()
	case *lua.LNilType:
		return typ, "(error object is a nil value)"
	case lua.LBool:
		return typ, "(error object is a boolean value: " + v.String() + ")"
	case *lua.LTable:
		if s, ok := v.RawGetString("type").(lua.LString); ok && s != "" {
			typ = string(s)
		}
		for _, k := range []string{"msg", "message"} {
			switch m := v.RawGetString(k).(type) {
			case lua.LString:
				return typ, string(m)
			case lua.LNumber:
				return typ, m.String()
			}
		}
	}
	if s, ok := vm.metaToString(obj); ok {
		return typ, s
	}
	return typ, "(error object is a " + obj.Type().String() + " value)"
}

// metaToString runs v's __tostring, time-boxed: it is script code.
func (vm *VM) metaToString(v lua.LValue) (string, bool) {
	L := vm.l
	fn, ok := L.GetMetaField(v, "__tostring").(*lua.LFunction)
	if !ok {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), tostringTimeout)
	defer cancel()
	top := L.GetTop()
	defer L.SetTop(top)
	L.Push(fn)
	L.Push(v)
	err := vm.withInterrupt(L, ctx, func() error {
		_, err := vm.protect(L, 1, 1, nil, false)
		return err
	})
	if err != nil {
		return "", false
	}
	switch s := L.Get(-1).(type) {
	case lua.LString:
		return string(s), true
	case lua.LNumber:
		return s.String(), true
	}
	return "", false
}

// callEntry runs inside Call's protected call: the target is resolved
// there, so that __index code and require run protected and interruptible
// too.
func (vm *VM) callEntry(L *lua.LState) int {
	nargs := L.GetTop()
	fn := vm.resolve(L, vm.target)
	L.Insert(fn, 1)
	L.Call(nargs, lua.MultRet)
	return L.GetTop()
}

func (vm *VM) resolve(L *lua.LState, t callTarget) lua.LValue {
	var v lua.LValue
	if t.proto != nil {
		L.Push(L.NewFunctionFromProto(t.proto))
		L.Call(0, 1)
		v = L.Get(-1)
		L.Pop(1)
	} else {
		parts := strings.Split(t.fn, ".")
		v = L.GetField(L.Get(lua.GlobalsIndex), parts[0])
		if v == lua.LNil {
			v = vm.tryRequire(L, parts[0])
		}
		for i, p := range parts[1:] {
			if _, ok := v.(*lua.LTable); !ok && L.GetMetatable(v) == lua.LNil {
				vm.raiseTyped(L, "TypeError", fmt.Sprintf("'%s' is not a function: '%s' is a %s value",
					t.fn, strings.Join(parts[:i+1], "."), v.Type()))
			}
			v = L.GetField(v, p)
		}
	}
	if v.Type() != lua.LTFunction && L.GetMetaField(v, "__call").Type() != lua.LTFunction {
		vm.raiseTyped(L, "TypeError", fmt.Sprintf("'%s' is not a function (a %s value)", t.fn, v.Type()))
	}
	return v
}

// tryRequire loads module name for a Call path, nil when there is no such
// module; any other failure of the module is the call's error.
func (vm *VM) tryRequire(L *lua.LState, name string) lua.LValue {
	if vm.requireFn == nil || !moduleNameRE.MatchString(name) {
		return lua.LNil
	}
	L.Push(vm.requireFn)
	L.Push(lua.LString(name))
	if _, err := vm.protect(L, 1, 1, nil, false); err != nil {
		checkInterrupt(L)
		obj := errorObject(err)
		if s, ok := obj.(lua.LString); ok && moduleNotFound(string(s), name) {
			return lua.LNil
		}
		L.Error(obj, 0)
	}
	v := L.Get(-1)
	L.Pop(1)
	return v
}

// luaReserved are Lua 5.1's reserved words plus gopher-lua's goto.
var luaReserved = map[string]bool{
	"and": true, "break": true, "do": true, "else": true, "elseif": true, "end": true,
	"false": true, "for": true, "function": true, "goto": true, "if": true, "in": true,
	"local": true, "nil": true, "not": true, "or": true, "repeat": true, "return": true,
	"then": true, "true": true, "until": true, "while": true,
}

// isLuaName reports whether s can be a global's name in Lua source.
func isLuaName(s string) bool {
	if s == "" || luaReserved[s] {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// isNamePath reports whether fn is name(.name)*, resolved without compiling.
func isNamePath(fn string) bool {
	for part := range strings.SplitSeq(fn, ".") {
		if !isLuaName(part) {
			return false
		}
	}
	return true
}
