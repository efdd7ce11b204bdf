package interpreters

import (
	"context"
	"reflect"
	"sort"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// remoteHost keeps the host functions a remote runtime gave the daemon:
// the daemon calls one back by its reference (MethodHostCall) over the
// connection, and it runs here, in the client.
type remoteHost struct {
	mu      sync.Mutex
	next    int64
	byRef   map[int64]supervisor.HostFunc
	byFuncs map[uintptr]registered // a function set given before, kept alive so its address stays its own
}

type registered struct {
	funcs map[string]supervisor.HostFunc
	refs  []protocol.HostFuncRef
}

// refs registers funcs, once per set, and returns what the daemon is told.
func (h *remoteHost) refs(funcs map[string]supervisor.HostFunc) []protocol.HostFuncRef {
	if len(funcs) == 0 {
		return nil
	}
	key := uintptr(reflect.ValueOf(funcs).UnsafePointer())
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.byFuncs[key]; ok {
		return r.refs
	}
	if h.byRef == nil {
		h.byRef = make(map[int64]supervisor.HostFunc)
		h.byFuncs = make(map[uintptr]registered)
	}
	refs := make([]protocol.HostFuncRef, 0, len(funcs))
	for name, fn := range funcs {
		h.next++
		h.byRef[h.next] = fn
		refs = append(refs, protocol.HostFuncRef{Name: name, Ref: h.next})
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	h.byFuncs[key] = registered{funcs: funcs, refs: refs}
	return refs
}

// serve is the handler of the daemon's MethodHostCall. ctx ends when the
// daemon cancels the request: the call it serves ended.
func (h *remoteHost) serve(ctx context.Context, p *protocol.HostCallParams) (any, error) {
	h.mu.Lock()
	fn := h.byRef[p.Ref]
	h.mu.Unlock()
	if fn == nil {
		return nil, protocol.Errorf(protocol.CodeHostError, "no host function %q in this client", p.Name)
	}
	ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
	defer cancel()
	args := []byte(p.Args)
	if len(args) == 0 {
		args = []byte{0x90}
	}
	res, err := fn(ctx, args)
	if err != nil {
		return nil, err
	}
	return msgpack.RawMessage(res), nil
}
