package supervisor

import (
	"context"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// callbacks serve the requests a worker makes for its Lua-side interpreters
// module: queues and other interpreters. from is the calling interpreter.
// Each request is served on the goroutine of the call it was made in, so a
// blocked queue get holds up only that call; its context ends with the
// call's (cancelled or past its deadline) or when the worker dies.
func (s *Supervisor) callbacks(from int64) map[string]protocol.Handler {
	return map[string]protocol.Handler{
		protocol.MethodQueueCreate: protocol.Handle(func(_ context.Context, p *protocol.QueueCreateParams) (any, error) {
			return s.createQueue(p.MaxSize, p.Unbound, from)
		}),
		protocol.MethodQueueInfo: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			info, err := s.Queue(p.ID)
			if err != nil {
				return nil, err
			}
			// The worker asks about a queue it has a handle on; one made by
			// Queue(id) from a bare ID reaches the queue from then on.
			s.qs.hold(from, p.ID)
			return &protocol.QueueInfo{MaxSize: info.MaxSize, Unbound: info.Unbound, Size: info.Size}, nil
		}),
		protocol.MethodQueuePut: protocol.Handle(func(ctx context.Context, p *protocol.QueuePutParams) (any, error) {
			ctx, stop := untilCallDeadline(ctx)
			defer stop()
			if cause := protocol.Ended(ctx); cause != nil { // the call is over: its caller saw it fail
				return nil, protocol.QueueWaitEnded(p.ID, protocol.CodeQueueFull, cause)
			}
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			return nil, s.QueuePut(ctx, PutRequest{Queue: p.ID, Item: p.Item(), From: from, Unbound: p.Unbound, Block: p.Block})
		}),
		protocol.MethodQueueGet: protocol.Handle(func(ctx context.Context, p *protocol.QueueGetParams) (any, error) {
			ctx, stop := untilCallDeadline(ctx)
			defer stop()
			if cause := protocol.Ended(ctx); cause != nil { // the call is over: its caller saw it fail
				return nil, protocol.QueueWaitEnded(p.ID, protocol.CodeQueueEmpty, cause)
			}
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			if s.stored() {
				item, err := s.storeGet(ctx, p.ID, p.Block, from)
				if err != nil {
					return nil, err
				}
				// The item stays the store's until the worker has it: if
				// this process dies before, the store hands it to another
				// getter. The call's next request is read only after the
				// item is settled, so what the script does next sees it
				// gone from the queue.
				return &protocol.Then{Result: &protocol.QueueGetResult{Unbound: item.Unbound, Value: item.Data}, After: item.Settle}, nil
			}
			var answer func([]byte) bool
			if respond, ok := ctx.Value(respondKey{}).(func(any) bool); ok {
				answer = func(data []byte) bool { return respond(&protocol.QueueGetResult{Value: data}) }
			}
			item, err := s.qs.get(ctx, GetRequest{Queue: p.ID, Block: p.Block, by: from, answer: answer})
			if err != nil {
				return nil, err
			}
			return &protocol.QueueGetResult{Unbound: item.Unbound, Value: item.Data}, nil
		}),
		protocol.MethodInterpCreate: func(ctx context.Context, _ []byte) (any, error) {
			return s.createFrom(ctx, from)
		},
		protocol.MethodInterpList: func(ctx context.Context, _ []byte) (any, error) {
			return s.listAll(ctx)
		},
		protocol.MethodInterpExists: protocol.Handle(func(ctx context.Context, p *protocol.IDParams) (any, error) {
			return p.ID == 0 || s.Exists(p.ID) || s.elsewhere(ctx, p.ID), nil
		}),
		protocol.MethodInterpRunning: protocol.Handle(func(ctx context.Context, p *protocol.IDParams) (any, error) {
			if p.ID == 0 {
				return true, nil
			}
			if s.elsewhere(ctx, p.ID) {
				return s.cfg.Peers.IsRunning(ctx, p.ID)
			}
			return s.IsRunning(p.ID)
		}),
		protocol.MethodInterpClose: protocol.Handle(func(ctx context.Context, p *protocol.IDParams) (any, error) {
			if err := restricted(p.ID, "destroy"); err != nil {
				return nil, err
			}
			if p.ID == from {
				return nil, protocol.Errorf(protocol.CodeInterpreter, "interpreter %d cannot close itself", from)
			}
			if s.elsewhere(ctx, p.ID) {
				return nil, s.cfg.Peers.Close(ctx, p.ID)
			}
			return nil, s.CloseInterpreter(p.ID)
		}),
		protocol.MethodInterpExec: protocol.Handle(func(ctx context.Context, p *protocol.InterpExecParams) (any, error) {
			if err := restricted(p.ID, "exec code for"); err != nil {
				return nil, err
			}
			if s.elsewhere(ctx, p.ID) {
				return nil, s.cfg.Peers.Exec(ctx, p.ID, p.Source, s.writerOf(ctx, from))
			}
			return nil, s.Exec(ctx, p.ID, "", p.Source)
		}),
		protocol.MethodInterpCall: protocol.Handle(func(ctx context.Context, p *protocol.InterpCallParams) (any, error) {
			if err := restricted(p.ID, "make a call in"); err != nil {
				return nil, err
			}
			var res []byte
			var err error
			if s.elsewhere(ctx, p.ID) {
				res, err = s.cfg.Peers.Call(ctx, p.ID, p.Fn, p.Args, s.writerOf(ctx, from))
			} else {
				res, err = s.callIn(ctx, p.ID, p.Fn, p.Args, from)
			}
			if err != nil {
				return nil, err
			}
			return msgpack.RawMessage(res), nil
		}),
		protocol.MethodInterpPrepare: protocol.Handle(func(ctx context.Context, p *protocol.InterpPrepareParams) (any, error) {
			if err := restricted(p.ID, "update __main__ for"); err != nil {
				return nil, err
			}
			if s.elsewhere(ctx, p.ID) {
				return nil, s.cfg.Peers.PrepareMain(ctx, p.ID, p.Names)
			}
			return nil, s.PrepareMain(ctx, p.ID, p.Names)
		}),
	}
}

// restricted refuses operations on the main interpreter, which is the host
// and not driven from Lua, as CPython refuses them on its main interpreter.
func restricted(id int64, op string) error {
	if id == 0 {
		return protocol.Errorf(protocol.CodeInterpreter, "cannot %s unrecognized interpreter %d", op, id)
	}
	return nil
}
