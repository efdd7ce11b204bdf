package daemon

import (
	"context"

	"github.com/subinterp/subinterp/protocol"
)

// Session serves one client whose requests reach the daemon some other way
// than its sockets: a cluster node serves each of its cluster's clients
// through one. It runs the same handlers as a socket connection, so a
// request means the same on either path; the transport only carries
// bodies and answers.
type Session struct {
	c  *conn
	hs map[string]protocol.Handler
}

// Client is how a session reaches its client.
type Client interface {
	// Notify sends a notification (output, restart notices). A call sends
	// its output through it before it returns, so a transport that keeps
	// the order of notifications and of the answer that follows keeps the
	// output ahead of the answer.
	Notify(method string, params any) error
	// Call makes a request of the client (a host function call) and waits
	// for its msgpack answer or its *protocol.Error; a client that is gone
	// is protocol.CodeClosed.
	Call(ctx context.Context, method string, params any) ([]byte, error)
}

// NewSession starts a session for the client called name (in logs).
func (s *Server) NewSession(name string, client Client) *Session {
	c := &conn{s: s, id: s.nextConn.Add(1), refs: make(map[int64]int), ready: make(chan struct{}), notify: client.Notify, call: client.Call}
	c.log = s.log.With("conn", c.id, "remote", name)
	close(c.ready)
	return &Session{c: c, hs: c.handlers(client.Notify)}
}

// Handle serves one request: method is one of protocol's Control methods,
// body its msgpack params. The answer is what a socket connection would
// encode with msgpack. Cancelling ctx cancels the request as a socket
// client's cancel does.
func (ss *Session) Handle(ctx context.Context, method string, body []byte) (any, error) {
	h := ss.hs[method]
	if h == nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "unknown method %q", method)
	}
	return h(ctx, body)
}

// Close releases the queue references the session's client held, as a
// socket connection's end does.
func (ss *Session) Close() { ss.c.release() }

// Interpreters is how many interpreters the daemon has alive: its load.
func (s *Server) Interpreters() int { return s.sup.Count() }

// Census is the supervisor's Census: the interpreters alive or being
// created, and the highest ID given to one.
func (s *Server) Census() (interpreters int, lastID int64) { return s.sup.Census() }

// Exists reports whether interpreter id lives in this daemon.
func (s *Server) Exists(id int64) bool { return s.sup.Exists(id) }

// CloseInterpreters closes every interpreter of the daemon, running or
// not, and goes on serving: what a cluster node cut off from its cluster
// does, so that nothing the cluster counts as lost runs on. It returns
// how many it closed.
func (s *Server) CloseInterpreters() int {
	n := s.sup.CloseAll()
	s.log.Warn("closed every interpreter", "count", n)
	return n
}
