package interpreters

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"strings"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// HostFunc is a Go function scripts call as host.NAME(...) after
// `local host = require("host")`. It runs in the host process (for a
// runtime from Dial, in the client that gave it), never in the worker.
//
// args arrive by copy in the normalised form of values; ctx is the context
// of the Exec or Call the script runs in, and ends when that call is
// cancelled, passes its deadline or its worker dies. The result goes back
// by copy: nil returns no value, a Tuple several, anything outside the
// fallback tier raises NotShareableError in Lua. A returned error, or a
// panic, raises {type = "HostError", msg = ...} in Lua, which pcall can
// catch. A function that has not returned when ctx ends is left behind:
// the call ends anyway and what the function returns later is dropped.
//
// Calls from one interpreter never overlap; calls from different
// interpreters run concurrently, so a HostFunc given to a runtime must be
// safe for concurrent use.
type HostFunc func(ctx context.Context, args ...any) (any, error)

// WithFunc gives scripts the host function fn as host.NAME, where host is
// require("host"). Given to New or Dial it reaches every interpreter of the
// runtime; given to Create, that interpreter; either way also the
// interpreters their scripts create. A later WithFunc of the same name
// wins, and a Create's over its runtime's. name must be a Lua name, else
// Create (or Dial) fails with ErrInvalidArgument.
//
// Functions given to a daemon-side runtime are not something a CLI user
// can give: over Dial, each client gives its own, and they run in it.
func WithFunc(name string, fn HostFunc) Option {
	return func(o *options) {
		switch {
		case !isLuaName(name):
			o.fail(errorf(ErrInvalidArgument, "WithFunc: %q is not a valid Lua name", name))
		case fn == nil:
			o.fail(errorf(ErrInvalidArgument, "WithFunc: the function %q is nil", name))
		default:
			o.funcs = maps.Clone(o.funcs)
			if o.funcs == nil {
				o.funcs = make(map[string]HostFunc)
			}
			o.funcs[name] = fn
		}
	}
}

// WithModule makes require(name) run src, once per interpreter, as a chunk
// named name with the interpreter's globals as its environment, and return
// (and keep in package.loaded) what it returns, as Lua 5.1's require does
// with a file. The module runs in the interpreter's own sandbox; one that
// does not compile raises a catchable error at require. name is a dotted
// Lua name ("util", "acme.text"), else ErrInvalidArgument; "interpreters",
// "host" and "json" are taken. Scope and precedence are WithFunc's.
func WithModule(name, src string) Option {
	return func(o *options) {
		if !isModuleName(name) {
			o.fail(errorf(ErrInvalidArgument, "WithModule: %q is not a dotted Lua name", name))
			return
		}
		if builtinModules[name] {
			o.fail(errorf(ErrInvalidArgument, "WithModule: the module name %q is taken", name))
			return
		}
		o.modules = maps.Clone(o.modules)
		if o.modules == nil {
			o.modules = make(map[string]string)
		}
		o.modules[name] = src
	}
}

// WithConfined walls scripts in. Through require("interpreters") a confined
// script sees only main, its own interpreter and those it created (and
// theirs): list_all lists only them, Interpreter(id) of any other raises
// InterpreterNotFoundError; and only the queues it created or was handed
// (in PrepareMain, a Call argument, a queue item or a host function's
// result): Queue(id) of any other raises QueueNotFoundError. Interpreters
// it creates are confined too.
//
// Without it, scripts see the whole runtime, as PEP 734 says. Scripts of
// different tenants sharing one runtime, or one daemon, are kept apart only
// when each is confined.
func WithConfined() Option { return func(o *options) { o.confined = true } }

// builtinModules are the modules every interpreter has.
var builtinModules = map[string]bool{"interpreters": true, "host": true, "json": true}

// isLuaName reports whether s is a Lua name that is not a reserved word.
func isLuaName(s string) bool { return luaName.MatchString(s) && !luaReserved[s] }

func isModuleName(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if !isLuaName(part) {
			return false
		}
	}
	return true
}

// fail records the first invalid option; Create, New's first Create and
// Dial report it.
func (o *options) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// hosting turns the options' functions and modules into the supervisor's,
// each function wrapped to convert its values with rt's codec. The
// runtime's own functions are wrapped once, so every Create that adds none
// of its own gives the backend the same map (a remote backend registers
// them with the daemon once).
func (rt *Runtime) hosting(o options) supervisor.Hosting {
	h := supervisor.Hosting{Modules: o.modules, Confined: o.confined}
	if len(o.funcs) == 0 {
		return h
	}
	if reflect.ValueOf(o.funcs).UnsafePointer() == reflect.ValueOf(rt.opts.funcs).UnsafePointer() {
		rt.wrapOnce.Do(func() { rt.wrapped = rt.wrapFuncs(o.funcs) })
		h.Funcs, h.Shared = rt.wrapped, true
		return h
	}
	h.Funcs = rt.wrapFuncs(o.funcs)
	return h
}

func (rt *Runtime) wrapFuncs(funcs map[string]HostFunc) map[string]supervisor.HostFunc {
	w := make(map[string]supervisor.HostFunc, len(funcs))
	for name, fn := range funcs {
		w[name] = rt.hostFunc(name, fn)
	}
	return w
}

// hostFunc adapts fn to the supervisor: msgpack in and out, its error and
// its panic made a HostError, a result that cannot be copied a
// NotShareableError. The queues in the result each carry one reference of
// the host's, taken here so that no handle's collection can destroy a queue
// on its way to the interpreter; the supervisor hands them to it.
func (rt *Runtime) hostFunc(name string, fn HostFunc) supervisor.HostFunc {
	return func(ctx context.Context, raw []byte) (res []byte, err error) {
		defer func() {
			if r := recover(); r != nil {
				res, err = nil, &protocol.Error{Code: protocol.CodeHostError, Msg: fmt.Sprintf("host function %s panicked: %v", name, r)}
			}
		}()
		v, err := rt.codec.Unmarshal(raw)
		if err != nil {
			return nil, err
		}
		args, _ := v.([]any)
		out, err := fn(ctx, args...)
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeHostError, Msg: err.Error()}
		}
		var items []any
		switch x := out.(type) {
		case nil:
		case Tuple:
			items = x
		default:
			items = []any{out}
		}
		res, err = rt.codec.MarshalList(items, protocol.Fallback)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeNotShareable, "the result of host function %s: %s", name, protocol.AsError(err).Msg)
		}
		if ids := protocol.QueueIDs(res); len(ids) > 0 {
			b, berr := rt.backend()
			if berr != nil {
				return nil, berr
			}
			for _, id := range ids {
				if err := b.RetainQueue(id); err != nil {
					return nil, err
				}
			}
		}
		runtime.KeepAlive(items)
		return res, nil
	}
}

// ExecNamed runs src as ExecContext does, with name as the chunk's name, so
// errors and tracebacks read "name:LINE: ...".
func (i *Interpreter) ExecNamed(ctx context.Context, name, src string) error {
	if i.id == 0 {
		return i.unrecognized("exec code for")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := i.rt.backend()
	if err != nil {
		return err
	}
	return i.result(b.Exec(ctx, i.id, name, src))
}
