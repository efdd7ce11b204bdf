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
// connection, and it runs here, in the client. The runtime's own set is
// registered once and kept; a set a Create brought is forgotten when the
// daemon says no interpreter holds it any more (NotifyHostRelease).
type remoteHost struct {
	mu     sync.Mutex
	next   int64
	byRef  map[int64]supervisor.HostFunc
	shared map[uintptr][]protocol.HostFuncRef // the runtime's own set, by its map's address
}

// refs registers funcs and returns what the daemon is told. shared says
// funcs is the runtime's own set, which every Create that brings none of
// its own gives again: it is registered once, and kept.
func (h *remoteHost) refs(funcs map[string]supervisor.HostFunc, shared bool) []protocol.HostFuncRef {
	if len(funcs) == 0 {
		return nil
	}
	key := uintptr(reflect.ValueOf(funcs).UnsafePointer())
	h.mu.Lock()
	defer h.mu.Unlock()
	if refs, ok := h.shared[key]; ok && shared {
		return refs
	}
	if h.byRef == nil {
		h.byRef = make(map[int64]supervisor.HostFunc)
		h.shared = make(map[uintptr][]protocol.HostFuncRef)
	}
	refs := make([]protocol.HostFuncRef, 0, len(funcs))
	for name, fn := range funcs {
		h.next++
		h.byRef[h.next] = fn
		refs = append(refs, protocol.HostFuncRef{Name: name, Ref: h.next})
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	if shared {
		h.shared[key] = refs
	}
	return refs
}

// released forgets the functions of refs, unless they are the runtime's
// own set, which a later Create may give again.
func (h *remoteHost) released(body []byte) {
	var p protocol.HostReleaseParams
	if err := msgpack.Unmarshal(body, &p); err != nil || len(p.Refs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, refs := range h.shared {
		if len(refs) > 0 && refs[0].Ref == p.Refs[0] {
			return
		}
	}
	for _, ref := range p.Refs {
		delete(h.byRef, ref)
	}
}

// registered is how many host functions are registered, for tests.
func (h *remoteHost) registered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byRef)
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
