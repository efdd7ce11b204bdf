package daemon

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// handlers are the control methods, each admitted by the server (refused
// once shutdown began) and cancelled when the shutdown grace ends. The
// output of calls goes to notify.
func (c *conn) handlers(notify notifier) map[string]protocol.Handler {
	s := c.s
	sup := s.sup
	hs := map[string]protocol.Handler{
		protocol.ControlCreate: protocol.Handle(func(ctx context.Context, p *protocol.CreateParams) (any, error) {
			out := &outputLog{log: s.log}
			id, err := sup.Create(ctx, supervisor.CreateOptions{
				Stdout: out,
				Stdlib: p.Stdlib,
				Limits: supervisor.Limits{
					MemoryBytes: p.MemoryLimit,
					CPUPerCall:  time.Duration(p.CPULimitNs),
					CPUTotal:    time.Duration(p.CPUTotalNs),
					CallTimeout: time.Duration(p.CallTimeoutNs),
					OutputBytes: p.OutputLimit,
					Created:     int(p.CreateLimit),
				},
				Restart: c.restartPolicy(p.Restart),
				Hosting: c.hosting(p),
			})
			if err != nil {
				c.log.Warn("create failed", "error", err)
				return nil, err
			}
			out.id.Store(id)
			pid, _ := sup.Pid(id)
			c.log.Info("interpreter created", "interpreter", id, "pid", pid)
			return id, nil
		}),
		protocol.ControlExec: protocol.Handle(func(ctx context.Context, p *protocol.ControlExecParams) (any, error) {
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			start := time.Now()
			err := sup.Exec(supervisor.WithOutput(ctx, output{notify, p.ID}), p.ID, p.Name, p.Source)
			s.m.observe(protocol.ControlExec, err, time.Since(start))
			return nil, err
		}),
		protocol.ControlCall: protocol.Handle(func(ctx context.Context, p *protocol.ControlCallParams) (any, error) {
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			start := time.Now()
			res, err := sup.Call(supervisor.WithOutput(ctx, output{notify, p.ID}), p.ID, p.Fn, p.Args)
			s.m.observe(protocol.ControlCall, err, time.Since(start))
			if err != nil {
				return nil, err
			}
			c.credit(protocol.QueueIDs(res))
			return msgpack.RawMessage(res), nil
		}),
		protocol.ControlPrepareMain: protocol.Handle(func(ctx context.Context, p *protocol.InterpPrepareParams) (any, error) {
			start := time.Now()
			err := sup.PrepareMain(ctx, p.ID, p.Names)
			s.m.observe(protocol.ControlPrepareMain, err, time.Since(start))
			return nil, err
		}),
		protocol.ControlClose: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			if err := sup.CloseInterpreter(p.ID); err != nil {
				return nil, err
			}
			c.log.Info("interpreter closed", "interpreter", p.ID)
			return nil, nil
		}),
		protocol.ControlIsRunning: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return sup.IsRunning(p.ID)
		}),
		protocol.ControlPid: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return sup.Pid(p.ID)
		}),
		protocol.ControlExists: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return sup.Exists(p.ID), nil
		}),
		protocol.ControlList: protocol.Handle(func(ctx context.Context, p *protocol.ListParams) (any, error) {
			return s.list(ctx, p.Stats), nil
		}),
		protocol.ControlStats: protocol.Handle(func(ctx context.Context, p *protocol.IDParams) (any, error) {
			st, err := sup.Stats(ctx, p.ID)
			if err != nil {
				return nil, err
			}
			return &st, nil
		}),
		protocol.ControlQueueCreate: protocol.Handle(func(_ context.Context, p *protocol.QueueCreateParams) (any, error) {
			id, err := sup.CreateQueue(p.MaxSize, p.Unbound)
			if err != nil {
				return nil, err
			}
			c.credit([]int64{id})
			return id, nil
		}),
		protocol.ControlQueueInfo: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			info, err := sup.Queue(p.ID)
			if err != nil {
				return nil, err
			}
			return &protocol.QueueInfo{MaxSize: info.MaxSize, Unbound: info.Unbound, Size: info.Size}, nil
		}),
		protocol.ControlQueuePut: protocol.Handle(func(ctx context.Context, p *protocol.QueuePutParams) (any, error) {
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			return nil, sup.QueuePut(ctx, supervisor.PutRequest{Queue: p.ID, Item: p.Item(), Unbound: p.Unbound, Block: p.Block})
		}),
		protocol.ControlQueueGet: protocol.Handle(func(ctx context.Context, p *protocol.QueueGetParams) (any, error) {
			ctx, cancel := protocol.WithTimeout(ctx, p.TimeoutNs)
			defer cancel()
			item, err := sup.QueueGet(ctx, supervisor.GetRequest{Queue: p.ID, Block: p.Block, Settles: true})
			if err != nil {
				return nil, err
			}
			if !item.Unbound {
				c.credit(protocol.QueueIDs(item.Data))
			}
			// An item of a cluster's queue leaves it only once the answer
			// is written: a node lost before leaves it to the next getter.
			return &protocol.Then{Result: &protocol.QueueGetResult{Unbound: item.Unbound, Value: item.Data}, After: item.Settle}, nil
		}),
		protocol.ControlQueueRetain: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			if err := sup.RetainQueue(p.ID); err != nil {
				return nil, err
			}
			c.credit([]int64{p.ID})
			return nil, nil
		}),
		protocol.ControlQueueRelease: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return nil, c.drop(p.ID)
		}),
		protocol.ControlQueueList: func(context.Context, []byte) (any, error) {
			return s.queueList(), nil
		},
		protocol.ControlQueuePin: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return nil, s.pin(p.ID)
		}),
		protocol.ControlQueueUnpin: protocol.Handle(func(_ context.Context, p *protocol.IDParams) (any, error) {
			return nil, s.unpin(p.ID)
		}),
	}
	for name, h := range hs {
		hs[name] = c.admit(h, name == protocol.ControlQueueGet || name == protocol.ControlQueuePut)
	}
	return hs
}

// admit wraps a handler: it waits for the session to be set up, is refused
// once shutdown began, and is cancelled when the shutdown grace ends, or
// as the shutdown begins for one that only waits (for a queue's item or
// room), which has no work to finish.
func (c *conn) admit(h protocol.Handler, waits bool) protocol.Handler {
	stopAt := c.s.hardCtx
	if waits {
		stopAt = c.s.drainCtx
	}
	return func(ctx context.Context, body []byte) (any, error) {
		<-c.ready
		if !c.s.enter() {
			return nil, protocol.Errorf(protocol.CodeUnavailable, "the daemon is shutting down")
		}
		defer c.s.leave()
		hctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(stopAt, cancel)
		defer stop()
		res, err := h(hctx, body)
		if err != nil && ctx.Err() == nil && stopAt.Err() != nil {
			// The daemon cancelled the call, not its caller.
			e := *protocol.AsError(err)
			e.Code, e.Cause = protocol.CodeUnavailable, ""
			e.Msg = "the daemon shut down during the call: " + e.Error()
			e.Formatted = ""
			return nil, &e
		}
		return res, err
	}
}
