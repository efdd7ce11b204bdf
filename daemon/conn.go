package daemon

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// conn is one admitted client connection and its control session.
type conn struct {
	s     *Server
	id    uint64
	log   hclog.Logger
	peer  *protocol.Peer
	ready chan struct{} // closed once peer is set

	mu     sync.Mutex
	refs   map[int64]int // queue references this connection holds, released when it closes
	closed bool
}

// start runs the session on nc and cleans up after it ends.
func (c *conn) start(nc net.Conn) {
	c.peer = protocol.NewPeer(&timedConn{Conn: nc}, protocol.PeerConfig{Handlers: c.handlers()})
	close(c.ready)
	go func() {
		<-c.peer.Done()
		c.release()
		c.s.forget(c)
		c.log.Debug("client disconnected", "reason", c.peer.Err())
	}()
}

// closeAnswered ends the session once every request it served has been
// answered, or once deadline fires; the cleanup in start follows.
func (c *conn) closeAnswered(deadline <-chan struct{}) {
	<-c.ready
	if c.peer == nil {
		return
	}
	select {
	case <-c.peer.Idle():
	case <-c.peer.Done():
	case <-deadline:
	}
	_ = c.peer.Close()
}

// release drops every queue reference the connection still holds.
func (c *conn) release() {
	c.mu.Lock()
	c.closed = true
	refs := c.refs
	c.refs = nil
	c.mu.Unlock()
	for id, n := range refs {
		for range n {
			c.s.sup.ReleaseQueue(id)
		}
	}
}

// credit records references the supervisor took for the host on this
// connection's behalf: a created or retained queue, or the queues inside a
// value delivered to it. Those arriving after the connection closed are
// released at once: no client will ever drop them.
func (c *conn) credit(ids []int64) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		for _, id := range ids {
			c.s.sup.ReleaseQueue(id)
		}
		return
	}
	for _, id := range ids {
		c.refs[id]++
	}
	c.mu.Unlock()
}

// drop releases one reference the connection holds; a client cannot
// release what it does not hold, so it cannot destroy another's queue.
func (c *conn) drop(id int64) error {
	c.mu.Lock()
	n := c.refs[id]
	switch {
	case n == 0:
		c.mu.Unlock()
		return protocol.Errorf(protocol.CodeInvalidArgument, "this connection holds no reference to queue %d", id)
	case n == 1:
		delete(c.refs, id)
	default:
		c.refs[id] = n - 1
	}
	c.mu.Unlock()
	c.s.sup.ReleaseQueue(id)
	return nil
}

// output is the writer of one call's output: notifications on this
// connection, which precede the call's response.
type output struct {
	c  *conn
	id int64
}

func (o output) Write(p []byte) (int, error) {
	if err := o.c.peer.Notify(protocol.NotifyOutput, &protocol.OutputParams{ID: o.id, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// timedConn bounds every write, so a client that stops reading is
// disconnected instead of stalling the workers whose output it receives.
type timedConn struct{ net.Conn }

func (t *timedConn) Write(p []byte) (int, error) {
	_ = t.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := t.Conn.Write(p)
	if err != nil {
		// A frame may be half written: the stream cannot go on.
		_ = t.Conn.Close()
	}
	return n, err
}

func decode(body []byte, v any) error {
	if err := msgpack.Unmarshal(body, v); err != nil {
		return protocol.Errorf(protocol.CodeProtocol, "params: %v", err)
	}
	return nil
}

func withTimeout(ctx context.Context, ns int64) (context.Context, context.CancelFunc) {
	if ns > 0 {
		return context.WithTimeout(ctx, time.Duration(ns))
	}
	return context.WithCancel(ctx)
}

// handlers are the control methods, each admitted by the server (refused
// once shutdown began) and cancelled when the shutdown grace ends.
func (c *conn) handlers() map[string]protocol.Handler {
	s := c.s
	sup := s.sup
	hs := map[string]protocol.Handler{
		protocol.ControlCreate: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.CreateParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
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
			})
			if err != nil {
				c.log.Warn("create failed", "error", err)
				return nil, err
			}
			out.id.Store(id)
			pid, _ := sup.Pid(id)
			c.log.Info("interpreter created", "interpreter", id, "pid", pid)
			return id, nil
		},
		protocol.ControlExec: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.ControlExecParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			ctx, cancel := withTimeout(ctx, p.TimeoutNs)
			defer cancel()
			start := time.Now()
			err := sup.Exec(supervisor.WithOutput(ctx, output{c, p.ID}), p.ID, p.Source)
			s.m.observe(protocol.ControlExec, err, time.Since(start))
			return nil, err
		},
		protocol.ControlCall: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.ControlCallParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			ctx, cancel := withTimeout(ctx, p.TimeoutNs)
			defer cancel()
			start := time.Now()
			res, err := sup.Call(supervisor.WithOutput(ctx, output{c, p.ID}), p.ID, p.Fn, p.Args)
			s.m.observe(protocol.ControlCall, err, time.Since(start))
			if err != nil {
				return nil, err
			}
			c.credit(protocol.QueueIDs(res))
			return msgpack.RawMessage(res), nil
		},
		protocol.ControlPrepareMain: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.InterpPrepareParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			start := time.Now()
			err := sup.PrepareMain(ctx, p.ID, p.Names)
			s.m.observe(protocol.ControlPrepareMain, err, time.Since(start))
			return nil, err
		},
		protocol.ControlClose: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			if err := sup.CloseInterpreter(p.ID); err != nil {
				return nil, err
			}
			c.log.Info("interpreter closed", "interpreter", p.ID)
			return nil, nil
		},
		protocol.ControlIsRunning: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return sup.IsRunning(p.ID)
		},
		protocol.ControlPid: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return sup.Pid(p.ID)
		},
		protocol.ControlExists: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return sup.Exists(p.ID), nil
		},
		protocol.ControlList: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.ListParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return s.list(ctx, p.Stats), nil
		},
		protocol.ControlStats: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			st, err := sup.Stats(ctx, p.ID)
			if err != nil {
				return nil, err
			}
			return &st, nil
		},
		protocol.ControlQueueCreate: func(_ context.Context, body []byte) (any, error) {
			var p protocol.QueueCreateParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			id, err := sup.CreateQueue(p.MaxSize, p.Unbound)
			if err != nil {
				return nil, err
			}
			c.credit([]int64{id})
			return id, nil
		},
		protocol.ControlQueueInfo: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			info, err := sup.Queue(p.ID)
			if err != nil {
				return nil, err
			}
			return &protocol.QueueInfo{MaxSize: info.MaxSize, Unbound: info.Unbound, Size: info.Size}, nil
		},
		protocol.ControlQueuePut: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.QueuePutParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			ctx, cancel := withTimeout(ctx, p.TimeoutNs)
			defer cancel()
			return nil, sup.QueuePut(ctx, p.ID, p.Item(), 0, p.Unbound, p.Block)
		},
		protocol.ControlQueueGet: func(ctx context.Context, body []byte) (any, error) {
			var p protocol.QueueGetParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			ctx, cancel := withTimeout(ctx, p.TimeoutNs)
			defer cancel()
			item, err := sup.QueueGet(ctx, p.ID, p.Block)
			if err != nil {
				return nil, err
			}
			if !item.Unbound {
				c.credit(protocol.QueueIDs(item.Data))
			}
			return &protocol.QueueGetResult{Unbound: item.Unbound, Value: item.Data}, nil
		},
		protocol.ControlQueueRetain: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			if err := sup.RetainQueue(p.ID); err != nil {
				return nil, err
			}
			c.credit([]int64{p.ID})
			return nil, nil
		},
		protocol.ControlQueueRelease: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return nil, c.drop(p.ID)
		},
		protocol.ControlQueueList: func(context.Context, []byte) (any, error) {
			return s.queueList(), nil
		},
		protocol.ControlQueuePin: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return nil, s.pin(p.ID)
		},
		protocol.ControlQueueUnpin: func(_ context.Context, body []byte) (any, error) {
			var p protocol.IDParams
			if err := decode(body, &p); err != nil {
				return nil, err
			}
			return nil, s.unpin(p.ID)
		},
	}
	for name, h := range hs {
		hs[name] = c.admit(h, name == protocol.ControlQueueGet || name == protocol.ControlQueuePut)
	}
	return hs
}

// restartPolicy turns a wire policy into the supervisor's. Its events go
// to this connection, if it asked for them and is still open; the log gets
// them either way.
func (c *conn) restartPolicy(p *protocol.RestartParams) *supervisor.RestartPolicy {
	if p == nil {
		return nil
	}
	return &supervisor.RestartPolicy{
		MaxRestarts: p.MaxRestarts,
		Period:      time.Duration(p.PeriodNs),
		InitScript:  p.InitScript,
		Backoff:     time.Duration(p.BackoffNs),
		MaxBackoff:  time.Duration(p.MaxBackoffNs),
		OnRestart: func(ev supervisor.RestartEvent) {
			c.log.Info("interpreter restart", "interpreter", ev.InterpreterID, "attempt", ev.Attempt, "gave_up", ev.GaveUp, "error", ev.Err)
			if !p.Notify {
				return
			}
			n := &protocol.RestartNotice{ID: ev.InterpreterID, Attempt: ev.Attempt, Cause: ev.Cause, GaveUp: ev.GaveUp}
			if ev.Err != nil {
				n.Err = protocol.AsError(ev.Err)
			}
			_ = c.peer.Notify(protocol.NotifyRestart, n)
		},
	}
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

// list describes the live interpreters; with stats it asks every worker
// for its resource use, a bounded number at a time.
func (s *Server) list(ctx context.Context, stats bool) []protocol.InterpInfo {
	infos := s.sup.List()
	out := make([]protocol.InterpInfo, len(infos))
	for i, in := range infos {
		out[i] = protocol.InterpInfo{ID: in.ID, Pid: in.Pid, CreatedUnixNano: in.Created.UnixNano(), Running: in.Running, Calls: in.Calls}
	}
	if !stats {
		return out
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			if st, err := s.sup.Stats(sctx, out[i].ID); err == nil {
				out[i].RSSBytes = st.RSSBytes
				out[i].CPUNanos = st.CPUNanos
			}
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) queueList() []protocol.QueueEntry {
	qs := s.sup.Queues()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]protocol.QueueEntry, len(qs))
	for i, q := range qs {
		out[i] = protocol.QueueEntry{ID: q.ID, MaxSize: q.MaxSize, Unbound: q.Unbound, Size: q.Size, Pinned: s.pins[q.ID]}
	}
	return out
}

// pin takes a reference the daemon holds itself, so the queue outlives
// every connection, until unpin.
func (s *Server) pin(id int64) error {
	if err := s.sup.RetainQueue(id); err != nil {
		return err
	}
	s.mu.Lock()
	s.pins[id]++
	s.mu.Unlock()
	return nil
}

func (s *Server) unpin(id int64) error {
	s.mu.Lock()
	n := s.pins[id]
	switch {
	case n == 0:
		s.mu.Unlock()
		if _, err := s.sup.Queue(id); err != nil {
			return err
		}
		return protocol.Errorf(protocol.CodeInvalidArgument, "queue %d is not pinned", id)
	case n == 1:
		delete(s.pins, id)
	default:
		s.pins[id] = n - 1
	}
	s.mu.Unlock()
	s.sup.ReleaseQueue(id)
	return nil
}
