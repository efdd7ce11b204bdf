package daemon

import (
	"context"
	"crypto/tls"
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
	ready chan struct{} // closed once peer and notify are set
	// notify sends the client a notification (output, restart notices)
	// ahead of the answer of the request in progress.
	notify func(method string, params any) error
	// call, when set, makes a request of a client that has no peer (a
	// Session's).
	call func(ctx context.Context, method string, params any) ([]byte, error)

	uid int    // the client's user on a Unix socket, else -1
	key []byte // what the session's call streams attach with

	// ctx ends when the session does: the calls on its streams with it.
	ctx  context.Context
	stop context.CancelFunc

	mu         sync.Mutex
	refs       map[int64]int // queue references this connection holds, released when it closes
	closed     bool
	streams    map[uint64]*stream
	nextStream uint64
	drained    chan struct{} // once draining, closed when the last stream ended
}

// start runs the session on nc and cleans up after it ends.
func (c *conn) start(nc net.Conn) {
	c.peer = protocol.NewPeer(&timedConn{Conn: nc}, protocol.PeerConfig{
		// A call's output goes to the session's notify, set before any
		// handler runs (admit waits for ready).
		Handlers: c.handlers(func(method string, params any) error { return c.notify(method, params) }),
		OnNotify: c.onNotify,
	})
	c.notify = c.peer.Notify
	close(c.ready)
	go func() {
		<-c.peer.Done()
		c.stop()
		for _, st := range c.release() {
			if st.cc != nil {
				_ = st.cc.Close()
			}
		}
		c.s.forget(c)
		c.log.Debug("client disconnected", "reason", c.peer.Err())
	}()
}

// onNotify serves the session's notifications: the cancellation of a
// request on one of its streams.
func (c *conn) onNotify(method string, body []byte) {
	if method != protocol.ControlStreamCancel {
		return
	}
	var p protocol.StreamCancelParams
	if err := msgpack.Unmarshal(body, &p); err != nil {
		return
	}
	c.mu.Lock()
	st := c.streams[p.Stream]
	c.mu.Unlock()
	if st != nil {
		st.cancelCall(p.Call)
	}
}

// closeAnswered ends the session once every request it served has been
// answered, and its streams have answered theirs and ended, or once
// deadline fires; the cleanup in start follows.
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
	select {
	case <-c.drainStreams():
	case <-deadline:
	}
	_ = c.peer.Close()
}

// release drops every queue reference the connection still holds, and
// returns its streams, which are its no longer.
func (c *conn) release() []*stream {
	c.mu.Lock()
	c.closed = true
	refs := c.refs
	c.refs = nil
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.streams = nil
	c.mu.Unlock()
	defer func() {
		for id, n := range refs {
			for range n {
				c.s.sup.ReleaseQueue(id)
			}
		}
	}()
	return streams
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

// notifier sends a notification to the client: on its session, or on the
// call stream a request came on.
type notifier func(method string, params any) error

// output is the writer of one call's output: notifications on the
// connection the call came on, which precede the call's response.
type output struct {
	notify notifier
	id     int64
}

func (o output) Write(p []byte) (int, error) {
	if err := o.notify(protocol.NotifyOutput, &protocol.OutputParams{ID: o.id, Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// timedConn bounds every write, so a client that stops reading is
// disconnected instead of stalling the workers whose output it receives.
type timedConn struct{ net.Conn }

// CloseRead ends reading once what has arrived is read (see
// protocol.CallConn.CloseRead), under TLS too.
func (t *timedConn) CloseRead() error {
	nc := t.Conn
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if cr, ok := nc.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return t.Conn.Close()
}

func (t *timedConn) Write(p []byte) (int, error) {
	_ = t.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	n, err := t.Conn.Write(p)
	if err != nil {
		// A frame may be half written: the stream cannot go on.
		_ = t.Conn.Close()
	}
	return n, err
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
			_ = c.notify(protocol.NotifyRestart, n)
		},
	}
}
