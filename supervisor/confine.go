package supervisor

import (
	"bytes"
	"context"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// confine walls in the requests of a confined interpreter's worker: what
// it names by ID must be main, itself, an interpreter created from it
// (however deep), or a queue it holds (one it made or was handed). Anything
// else is answered as if it did not exist. The checks are the
// supervisor's: a worker runs untrusted code and may send any request.
func (s *Supervisor) confine(it *interp, hs map[string]protocol.Handler) {
	interpOp := func(h protocol.Handler) protocol.Handler {
		return func(ctx context.Context, body []byte) (any, error) {
			id, err := firstID(body)
			if err != nil {
				return nil, err
			}
			if !s.reaches(it, id) {
				return nil, s.notFound(id)
			}
			return h(ctx, body)
		}
	}
	queueOp := func(h protocol.Handler) protocol.Handler {
		return func(ctx context.Context, body []byte) (any, error) {
			id, err := firstID(body)
			if err != nil {
				return nil, err
			}
			if !s.qs.holds(it.id, id) {
				return nil, queueNotFound(id)
			}
			return h(ctx, body)
		}
	}
	for _, m := range []string{protocol.MethodInterpRunning, protocol.MethodInterpClose, protocol.MethodInterpExec, protocol.MethodInterpCall, protocol.MethodInterpPrepare} {
		hs[m] = interpOp(hs[m])
	}
	for _, m := range []string{protocol.MethodQueueInfo, protocol.MethodQueuePut, protocol.MethodQueueGet} {
		hs[m] = queueOp(hs[m])
	}
	hs[protocol.MethodInterpExists] = protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
		return p.ID == 0 || (s.Exists(p.ID) && s.reaches(it, p.ID)), nil
	})
	hs[protocol.MethodInterpList] = func(context.Context, []byte) (any, error) {
		ids := []int64{0}
		for _, in := range s.List() {
			if s.reaches(it, in.ID) {
				ids = append(ids, in.ID)
			}
		}
		return ids, nil
	}
	// A value the worker sends on (a call's arguments, a put's item) may
	// carry only queues it holds: Lua cannot make a handle of any other,
	// and a worker that forges one must not hand it to an interpreter.
	for m, h := range hs {
		hs[m] = func(ctx context.Context, body []byte) (any, error) {
			for _, id := range protocol.QueueIDs(body) {
				if !s.qs.holds(it.id, id) {
					return nil, queueNotFound(id)
				}
			}
			return h(ctx, body)
		}
	}
}

// reaches reports whether a script confined to it may name interpreter id:
// main, it, or one created from it.
func (s *Supervisor) reaches(it *interp, id int64) bool {
	if id == 0 || id == it.id {
		return true
	}
	s.mu.RLock()
	target := s.interps[id]
	s.mu.RUnlock()
	return target != nil && slices.Contains(target.ancestors, it.id)
}

// firstID reads the ID that the params of every interpreter and queue
// request begin with.
func firstID(body []byte) (int64, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(body))
	if n, err := dec.DecodeArrayLen(); err != nil || n < 1 {
		return 0, protocol.Errorf(protocol.CodeProtocol, "params: want an array beginning with an ID")
	}
	id, err := dec.DecodeInt64()
	if err != nil {
		return 0, protocol.Errorf(protocol.CodeProtocol, "params: %v", err)
	}
	return id, nil
}
