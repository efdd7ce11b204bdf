package supervisor

import (
	"context"
	"errors"
	"sort"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// HostFunc serves a script's call of a host function. args is a msgpack
// array of the arguments (fallback tier), whose queues come with a host
// reference each, as in a delivered value; the result is a msgpack array of
// the values to return, whose queues must each carry one host reference,
// which passes to the interpreter. ctx is the context of the call the
// script runs in. An error that is not a *protocol.Error reaches Lua as a HostError
// with its text.
type HostFunc func(ctx context.Context, args []byte) ([]byte, error)

// Hosting is what a host gives an interpreter's scripts beyond pure Lua.
// Interpreters created from Lua get their creator's. The zero value gives
// nothing.
type Hosting struct {
	// Funcs are the host functions require("host") offers, by name.
	Funcs map[string]HostFunc
	// Modules are Lua sources require(name) runs once, by module name.
	Modules map[string]string
	// Confined walls the interpreter's scripts in: through the interpreters
	// module they reach only main, this interpreter and those created from
	// it, and the queues they made or were handed.
	Confined bool
	// Shared says Funcs is a set every create of a runtime that brings
	// none of its own gives again, the same map each time: a backend that
	// registers functions elsewhere registers it once and keeps it.
	Shared bool
	// Released, when set, is called once no interpreter holds Funcs any
	// more: the one created with them and every one its scripts created
	// are gone.
	Released func()
	// holders counts the interpreters holding Funcs, shared by an
	// interpreter and those its scripts create.
	holders *atomic.Int64
	// Prompt says every one of Funcs returns soon after its ctx ends, so
	// each may run on the caller's goroutine, with no hand-off: a
	// daemon's, which forward the call to the client that gave them, are.
	Prompt bool
}

// workerNames are the sorted names of funcs and modules, for the worker.
func (h *Hosting) workerNames() (funcs, modules []string) {
	for n := range h.Funcs {
		funcs = append(funcs, n)
	}
	for n := range h.Modules {
		modules = append(modules, n)
	}
	sort.Strings(funcs)
	sort.Strings(modules)
	return funcs, modules
}

// hostCallbacks adds to hs the requests a worker makes for its host's
// functions and modules.
func (s *Supervisor) hostCallbacks(it *interp, hs map[string]protocol.Handler) {
	hs[protocol.MethodHostCall] = protocol.Handle(func(ctx context.Context, p *protocol.HostCallParams) (any, error) {
		fn := it.hosting.Funcs[p.Name]
		if fn == nil {
			return nil, protocol.Errorf(protocol.CodeHostError, "no host function %q", p.Name)
		}
		ctx, stop := untilCallDeadline(ctx)
		defer stop()
		args := []byte(p.Args)
		if len(args) == 0 {
			args = []byte{0x90} // no arguments
		}
		s.qs.deliver(0, args) // the queues in args are the host's now
		// fn runs on the goroutine reading the call, never the caller's
		// unless the functions are prompt (see roundTrip).
		res, err := fn(ctx, args)
		if returned, _ := ctx.Value(hostReturnKey{}).(func() bool); returned != nil && !returned() {
			// The call ended first: the result is dropped, and with it
			// the references to the queues in it.
			if err == nil {
				for _, id := range protocol.QueueIDs(res) {
					s.ReleaseQueue(id)
				}
			}
			return nil, errAnswered
		}
		if err != nil && ctx.Err() != nil {
			// It gave up because its call ended: the call's end is the
			// answer, as it would be had the function ignored ctx.
			return nil, protocol.AsError(ctx.Err())
		}
		if err = hostError(err); err != nil {
			return nil, err
		}
		// The queues in the results come with a reference each, which
		// passes to the interpreter.
		s.qs.hold(it.id, protocol.QueueIDs(res)...)
		for _, id := range protocol.QueueIDs(res) {
			s.ReleaseQueue(id)
		}
		return msgpack.RawMessage(res), nil
	})
	hs[protocol.MethodHostModule] = protocol.Handle(func(_ context.Context, p *protocol.NameParams) (any, error) {
		src, ok := it.hosting.Modules[p.Name]
		if !ok {
			return nil, protocol.Errorf(protocol.CodeInvalidArgument, "no host module %q", p.Name)
		}
		return src, nil
	})
}

// hostError is the error a host function returned, as the wire carries
// it: a *protocol.Error as it is (a result that cannot be copied), any
// other as a HostError with its text.
func hostError(err error) error {
	if err == nil {
		return nil
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	return &protocol.Error{Code: protocol.CodeHostError, Msg: err.Error()}
}

// hold counts one more interpreter holding h's functions.
func (h *Hosting) hold() {
	if h.Released == nil {
		return
	}
	if h.holders == nil {
		h.holders = new(atomic.Int64)
	}
	h.holders.Add(1)
}

// release counts one interpreter holding h's functions less, and calls
// Released after the last.
func (h *Hosting) release() {
	if h.Released != nil && h.holders.Add(-1) == 0 {
		h.Released()
	}
}
