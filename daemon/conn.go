package daemon

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

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

	mu     sync.Mutex
	refs   map[int64]int // queue references this connection holds, released when it closes
	closed bool
}

// start runs the session on nc and cleans up after it ends.
func (c *conn) start(nc net.Conn) {
	c.peer = protocol.NewPeer(&timedConn{Conn: nc}, protocol.PeerConfig{Handlers: c.handlers()})
	c.notify = c.peer.Notify
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
	if err := o.c.notify(protocol.NotifyOutput, &protocol.OutputParams{ID: o.id, Data: p}); err != nil {
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
