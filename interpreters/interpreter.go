package interpreters

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"

	"github.com/subinterp/subinterp/protocol"
)

// Whence values: how an interpreter came to be.
const (
	WhenceRuntime = "runtime init"         // the main interpreter
	WhenceStdlib  = "_interpreters module" // created by Create
)

// Interpreter is a handle on one interpreter. A runtime has exactly one
// *Interpreter per ID, so handles compare equal exactly when they name the
// same interpreter.
type Interpreter struct {
	rt *Runtime
	id int64
}

// ID returns the interpreter's ID; the main interpreter's is 0.
func (i *Interpreter) ID() int64 { return i.id }

// Whence says how the interpreter was created: WhenceRuntime for the main
// interpreter, WhenceStdlib for one made by Create.
func (i *Interpreter) Whence() string {
	if i.id == 0 {
		return WhenceRuntime
	}
	return WhenceStdlib
}

// String returns "Interpreter(ID)".
func (i *Interpreter) String() string { return fmt.Sprintf("Interpreter(%d)", i.id) }

// unrecognized is the error for operations the host does not accept on
// itself, as CPython refuses them on its main interpreter.
func (i *Interpreter) unrecognized(op string) error {
	return errorf(ErrInterpreter, "cannot %s unrecognized interpreter %d", op, i.id)
}

// result turns a backend failure into its public error. An interpreter
// found gone has its handle dropped from the runtime, which would otherwise
// grow with every interpreter ever made.
func (i *Interpreter) result(err error) error {
	if err == nil {
		return nil
	}
	err = fromWire(err)
	if errors.Is(err, ErrInterpreterNotFound) {
		i.rt.forget(i.id)
	}
	return err
}

// IsRunning reports whether an Exec, Call or PrepareMain is in progress in
// the interpreter. The main interpreter is always running.
func (i *Interpreter) IsRunning() (bool, error) {
	if i.id == 0 {
		return true, nil
	}
	b, err := i.rt.backend()
	if err != nil {
		return false, err
	}
	running, err := b.IsRunning(i.id)
	return running, i.result(err)
}

// Pid returns the process id of the interpreter's worker; for the main
// interpreter, the host's own.
func (i *Interpreter) Pid() (int, error) {
	if i.id == 0 {
		return os.Getpid(), nil
	}
	b, err := i.rt.backend()
	if err != nil {
		return 0, err
	}
	pid, err := b.Pid(i.id)
	return pid, i.result(err)
}

// Close ends the interpreter and reaps its worker process. It fails with
// ErrAlreadyRunning while a call is in progress. Interpreters it created
// live on.
func (i *Interpreter) Close() error {
	if i.id == 0 {
		return i.unrecognized("destroy")
	}
	b, err := i.rt.backend()
	if err != nil {
		return err
	}
	if err := b.CloseInterpreter(i.id); err != nil {
		return i.result(err)
	}
	i.rt.forget(i.id)
	return nil
}

// Exec runs a Lua chunk with the interpreter's globals as its environment.
// An uncaught error returns *ExecutionFailed; what ran before it stays done.
func (i *Interpreter) Exec(src string) error {
	return i.ExecContext(context.Background(), src)
}

// ExecContext is Exec with a context: cancelling it interrupts the running
// Lua code, and the error then matches ctx.Err().
func (i *Interpreter) ExecContext(ctx context.Context, src string) error {
	return i.ExecNamed(ctx, "", src)
}

// Call calls fn in the interpreter with args and returns its result. fn is
// a Lua expression evaluating to a function: a global name, a dotted path
// or a function literal. No result gives nil, one gives that value, several
// give a Tuple.
func (i *Interpreter) Call(fn string, args ...any) (any, error) {
	return i.CallContext(context.Background(), fn, args...)
}

// CallContext is Call with a context: cancelling it interrupts the running
// Lua code, and the error then matches ctx.Err().
func (i *Interpreter) CallContext(ctx context.Context, fn string, args ...any) (any, error) {
	if i.id == 0 {
		return nil, i.unrecognized("make a call in")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := i.rt.backend()
	if err != nil {
		return nil, err
	}
	raw, err := i.rt.codec.MarshalList(args, protocol.Fallback)
	if err != nil {
		return nil, fromWire(err)
	}
	res, err := b.Call(ctx, i.id, fn, raw)
	runtime.KeepAlive(args) // queue handles in args hold their queues until the interpreter does
	if err != nil {
		return nil, i.result(err)
	}
	return i.rt.results(res)
}

// results turns a call's msgpack array of return values into nil, the one
// value, or a Tuple.
func (rt *Runtime) results(raw []byte) (any, error) {
	v, err := rt.codec.Unmarshal(raw)
	if err != nil {
		return nil, fromWire(err)
	}
	vs, ok := v.([]any)
	if !ok {
		return nil, errorf(ErrInterpreter, "malformed call result")
	}
	switch len(vs) {
	case 0:
		return nil, nil
	case 1:
		return vs[0], nil
	}
	return Tuple(vs), nil
}

// luaName matches a valid Lua identifier; reserved words are checked apart.
var luaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var luaReserved = map[string]bool{
	"and": true, "break": true, "do": true, "else": true, "elseif": true, "end": true,
	"false": true, "for": true, "function": true, "goto": true, "if": true, "in": true,
	"local": true, "nil": true, "not": true, "or": true, "repeat": true, "return": true,
	"then": true, "true": true, "until": true, "while": true,
}

// PrepareMain binds each entry of ns as a global of the interpreter. Values
// must be shareable (the strict tier); keys valid Lua names. On any error
// nothing is bound.
func (i *Interpreter) PrepareMain(ns map[string]any) error {
	if i.id == 0 {
		return i.unrecognized("update __main__ for")
	}
	if len(ns) == 0 {
		return errorf(ErrInvalidArgument, "PrepareMain needs at least one name")
	}
	for k, v := range ns {
		if !luaName.MatchString(k) || luaReserved[k] {
			return errorf(ErrInvalidArgument, "%q is not a valid Lua name", k)
		}
		if err := i.rt.codec.Check(v, protocol.Strict); err != nil {
			return errorf(ErrNotShareable, "%s: %v", k, err)
		}
	}
	b, err := i.rt.backend()
	if err != nil {
		return err
	}
	raw, err := i.rt.codec.Marshal(ns, protocol.Fallback) // every value was checked strict above
	if err != nil {
		return fromWire(err)
	}
	err = b.PrepareMain(context.Background(), i.id, raw)
	runtime.KeepAlive(ns) // queue handles in ns hold their queues until the interpreter does
	return i.result(err)
}

// Thread is a call running in its own goroutine.
type Thread struct {
	done   chan struct{}
	result any
	err    error
}

// CallInThread starts Call in a new goroutine and returns at once.
func (i *Interpreter) CallInThread(fn string, args ...any) *Thread {
	t := &Thread{done: make(chan struct{})}
	go func() {
		defer close(t.done)
		t.result, t.err = i.Call(fn, args...)
	}()
	return t
}

// Wait waits for the call and returns its result or error.
func (t *Thread) Wait() (any, error) {
	<-t.done
	return t.result, t.err
}

// Done is closed when the call has returned.
func (t *Thread) Done() <-chan struct{} { return t.done }
