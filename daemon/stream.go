package daemon

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/protocol"
)

// maxStreams bounds the call streams of one session, so a client cannot
// exhaust the daemon's memory with goroutines; a client needs as many as
// it makes calls at once.
const maxStreams = 4096

// stream is a call stream of a session (see protocol/stream.go): one
// request at a time, read, served and answered on the goroutine that
// serves the stream, so nothing hands the request on between goroutines.
type stream struct {
	c  *conn
	id uint64
	cc *protocol.CallConn // set once connected, under c.mu
	// release gives back what the connection holds, once it is closed.
	release func()
	hs      map[string]protocol.Handler

	hostCalls uint32           // the id of the latest request made of the client
	yield     protocol.Yielder // the serving goroutine's, which waits only in read(2)

	mu       sync.Mutex
	serving  uint32             // the request being served; 0 between requests
	cancel   context.CancelFunc // cancels it
	cancelTo uint32             // the latest request the client cancelled
}

// newKey makes the key a session's streams attach with.
func newKey() []byte {
	k := make([]byte, 16)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

// attach admits nc, whose hello asked for it, as a call stream of the
// session a names, and serves it. The stream's user must be the
// session's: a key that leaked does not let another user in.
func (s *Server) attach(nc net.Conn, helloID uint32, a *protocol.StreamAttach, uid int, log hclog.Logger) {
	var c *conn
	s.mu.Lock()
	draining := s.draining
	for cc := range s.conns {
		if cc.id == a.Session {
			c = cc
		}
	}
	s.mu.Unlock()
	var st *stream
	refuse := protocol.Errorf(protocol.CodePermissionDenied, "no session %d to attach a call stream to", a.Session)
	switch {
	case draining:
		refuse = protocol.Errorf(protocol.CodeUnavailable, "the daemon is shutting down")
	case c == nil || c.uid != uid || subtle.ConstantTimeCompare(c.key, a.Key) != 1:
	default:
		st, refuse = c.addStream()
	}
	if refuse != nil {
		log.Warn("refused a call stream", "reason", refuse.Msg)
		_ = protocol.AnswerHello(nc, helloID, protocol.HelloResult{}, refuse)
		nc.Close()
		return
	}
	if err := protocol.AnswerHello(nc, helloID, protocol.HelloResult{Version: protocol.Version, Pid: os.Getpid(), Stream: st.id}, nil); err != nil {
		nc.Close()
		c.dropStream(st)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	if c.connect(st, nc) {
		st.serve()
	}
}

// addStream makes a call stream of c, unless c has ended or has as many
// as it may. It is connected once its hello is answered.
func (c *conn) addStream() (*stream, *protocol.Error) {
	<-c.ready
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed || c.drained != nil:
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the session ended")
	case len(c.streams) >= maxStreams:
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the session has %d call streams, as many as it may", maxStreams)
	}
	c.nextStream++
	st := &stream{c: c, id: c.nextStream}
	all := c.handlers(func(method string, params any) error { return st.cc.Notify(method, params) })
	st.hs = make(map[string]protocol.Handler, len(protocol.StreamMethods))
	for name, h := range all {
		if slices.Contains(protocol.StreamMethods, name) {
			st.hs[name] = h
		}
	}
	c.streams[st.id] = st
	return st, nil
}

// connect gives st its connection, nc, unless c ended meanwhile.
func (c *conn) connect(st *stream, nc net.Conn) bool {
	rw, release := c.s.streamConn(nc)
	cc := protocol.NewCallConn(rw)
	st.release = release
	c.mu.Lock()
	ok := !c.closed && c.drained == nil
	if ok {
		st.cc = cc
	}
	c.mu.Unlock()
	if !ok {
		_ = cc.Close()
		c.dropStream(st)
	}
	return ok
}

// dropStream forgets st and closes its connection.
func (c *conn) dropStream(st *stream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	if c.drained != nil && len(c.streams) == 0 {
		closeOnce(c.drained)
	}
	cc := st.cc
	c.mu.Unlock()
	if cc != nil {
		_ = cc.Close()
	}
	if st.release != nil {
		st.release()
	}
}

// serve reads, serves and answers the stream's requests until it ends.
func (st *stream) serve() {
	defer st.c.dropStream(st)
	for {
		st.yield.Yield()
		m, err := st.cc.Read()
		if err != nil || m.Kind != protocol.KindRequest {
			return // gone, or not speaking the stream's protocol
		}
		res, err := st.call(m)
		if st.cc.Respond(m.ID, protocol.AsError(err), res) != nil {
			return
		}
	}
}

// call serves one request, under a context its session's end or the
// client's ControlStreamCancel cancels.
func (st *stream) call(m *protocol.Message) (any, error) {
	h := st.hs[m.Method]
	if h == nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "protocol: %q is not served on a call stream", m.Method)
	}
	ctx, cancel := context.WithCancel(context.WithValue(st.c.ctx, streamKey{}, st))
	defer cancel()
	st.mu.Lock()
	st.serving, st.cancel = m.ID, cancel
	cancelled := st.cancelTo == m.ID
	st.mu.Unlock()
	if cancelled {
		cancel()
	}
	res, err := h(ctx, m.Body)
	st.mu.Lock()
	st.serving, st.cancel = 0, nil
	st.mu.Unlock()
	return res, err
}

// cancelCall cancels request id: now if it is being served, else as it
// starts, should the cancellation have overtaken it.
func (st *stream) cancelCall(id uint32) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.cancelTo = id
	if st.serving == id && st.cancel != nil {
		st.cancel()
	}
}

// drainStreams stops c's streams taking requests: each answers those it
// has been sent, refused as the daemon is shutting down, and ends. The
// channel is closed once all have ended.
func (c *conn) drainStreams() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drained == nil {
		c.drained = make(chan struct{})
		for _, st := range c.streams {
			if st.cc != nil {
				_ = st.cc.CloseRead()
			}
		}
	}
	if len(c.streams) == 0 {
		closeOnce(c.drained)
	}
	return c.drained
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// maxBlockingStreams bounds the streams whose socket is blocking, across
// the daemon: an idle one holds a thread asleep in read(2), and a process
// that runs out of threads dies. The streams beyond it wait in the poller.
const maxBlockingStreams = 1024

// streamConn is what a call stream reads and writes: while fewer than
// maxBlockingStreams are, its socket in blocking mode, under TLS too (see
// socket.Blocking), its writes bounded as timedConn bounds them;
// otherwise a timedConn. release gives back the blocking socket's place.
func (s *Server) streamConn(nc net.Conn) (rw io.ReadWriteCloser, release func()) {
	if s.blocking.Add(1) <= maxBlockingStreams {
		if rw, ok := socket.Blocking(nc, writeTimeout); ok {
			return rw, func() { s.blocking.Add(-1) }
		}
	}
	s.blocking.Add(-1)
	return &timedConn{Conn: nc}, func() {}
}

// streamKey is the context key of the stream a request came on.
type streamKey struct{}

// callClient makes a host call of the client on st, during the request
// st is serving: the client reads st for that request's answer, so it
// reads this request and answers it on st, on the goroutine waiting for
// the call, with no hand-off on either side. A client that has not
// answered within cancelGrace of ctx's end loses the stream.
func (st *stream) callClient(ctx context.Context, p *protocol.HostCallParams) ([]byte, error) {
	st.hostCalls++
	id := st.hostCalls
	if err := st.cc.Request(id, protocol.MethodHostCall, p); err != nil {
		if pe, ok := err.(*protocol.Error); ok {
			return nil, pe
		}
		return nil, &protocol.Error{Code: protocol.CodeClosed, Msg: err.Error()}
	}
	var mu sync.Mutex
	var giveUp *time.Timer
	answered := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if answered {
			return
		}
		if ctx.Err() != context.DeadlineExceeded {
			// The client cannot see this end on its own.
			_ = st.c.notify(protocol.NotifyHostCancel, &protocol.StreamCancelParams{Stream: st.id, Call: id})
		}
		giveUp = time.AfterFunc(cancelGrace, func() { _ = st.cc.Close() })
	})
	defer func() {
		stop()
		mu.Lock()
		answered = true
		if giveUp != nil {
			giveUp.Stop()
		}
		mu.Unlock()
	}()
	for {
		m, err := st.cc.Read()
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeClosed, Msg: err.Error()}
		}
		if m.Kind == protocol.KindResponse && m.ID == id {
			if m.Error != nil {
				return nil, m.Error
			}
			return m.Body, nil
		}
	}
}
