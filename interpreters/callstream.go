package interpreters

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/protocol"
)

// maxIdleStreams bounds the call streams a remote runtime keeps open
// between calls; it opens more when more calls run at once.
const maxIdleStreams = 16

// callStream is one call stream to the daemon (see protocol/stream.go):
// the goroutine making a call writes its request and reads until its
// response, and nothing else touches the stream meanwhile.
type callStream struct {
	id    uint64
	cc    *protocol.CallConn
	last  uint32           // the id of the latest request
	yield protocol.Yielder // for the goroutine holding the stream, which waits only in read(2)

	// The call in progress, which the daemon may end (NotifyHostCancel)
	// from the session's reader once it has made a host call.
	hostMu   sync.Mutex
	hostStop context.CancelFunc // ends the call's host functions; nil until then
	hostFrom uint32             // the first host call of the call in progress
	cancelTo uint32             // the latest host call the daemon cancelled
}

// streamTrip is roundTrip on a call stream: one request and its answer,
// with the call's output written as it comes. A cancelled ctx sends
// ControlStreamCancel on the session and still waits, boundedly, for the
// daemon's answer, which then says what happened.
func (r *remoteBackend) streamTrip(ctx context.Context, method string, params any) ([]byte, error) {
	if r.via != nil {
		return r.roundTrip(ctx, method, params) // a cluster node's requests go through the cluster
	}
	if err := ctx.Err(); err != nil {
		return nil, protocol.AsError(err)
	}
	st, err := r.takeStream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, r.wireError(ctx, ctx.Err())
		}
		if _, ok := err.(*protocol.Error); ok {
			return nil, r.wireError(ctx, err)
		}
		return nil, err // the dial's own error
	}
	st.yield.Yield()
	st.last++
	id := st.last
	if err := st.cc.Request(id, method, params); err != nil {
		if pe, ok := err.(*protocol.Error); ok {
			r.putStream(st) // not sent: the stream is intact
			return nil, pe
		}
		r.dropStream(st)
		return nil, r.wireError(ctx, &protocol.Error{Code: protocol.CodeClosed, Msg: err.Error()})
	}

	var (
		mu        sync.Mutex
		answered  bool
		abandon   *time.Timer
		abandoned bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if answered {
			return
		}
		_ = r.peer.Notify(protocol.ControlStreamCancel, &protocol.StreamCancelParams{Stream: st.id, Call: id})
		abandon = time.AfterFunc(cancelWait, func() {
			mu.Lock()
			abandoned = !answered
			mu.Unlock()
			if abandoned {
				_ = st.cc.Close() // ends the read below
			}
		})
	})
	res, err := r.readAnswer(ctx, st, id)
	stop()
	mu.Lock()
	answered = true
	if abandon != nil {
		abandon.Stop()
	}
	gaveUp := abandoned
	mu.Unlock()

	switch {
	case err == nil:
		r.putStream(st)
		return res, nil
	case gaveUp:
		r.dropStream(st)
		return nil, r.wireError(ctx, ctx.Err())
	default:
		if _, ok := err.(*protocol.Error); ok {
			r.putStream(st) // the daemon's answer: the stream is in step
			return nil, r.wireError(ctx, err)
		}
		r.dropStream(st)
		return nil, r.wireError(ctx, &protocol.Error{Code: protocol.CodeClosed, Msg: err.Error()})
	}
}

// takeStream gives the most recently used idle stream, or a new one.
func (r *remoteBackend) takeStream(ctx context.Context) (*callStream, error) {
	select {
	case <-r.peer.Done():
		return nil, &protocol.Error{Code: protocol.CodeClosed, Msg: fmt.Sprint(r.peer.Err())}
	default:
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, protocol.ErrPeerClosed
	}
	if n := len(r.idle); n > 0 {
		st := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.streams[st] = false
		r.mu.Unlock()
		return st, nil
	}
	r.mu.Unlock()
	return r.openStream(ctx)
}

// openStream dials a call stream attached to the runtime's session.
func (r *remoteBackend) openStream(ctx context.Context) (*callStream, error) {
	conn, res, err := dialHello(ctx, r.addr, r.opts, protocol.HelloParams{Version: protocol.Version, Token: r.opts.token, Attach: &r.attach})
	if err != nil {
		return nil, err
	}
	rw, _ := socket.Blocking(conn, 0)
	st := &callStream{id: res.Stream, cc: protocol.NewCallConn(rw)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = st.cc.Close()
		return nil, protocol.ErrPeerClosed
	}
	r.streams[st] = false
	return st, nil
}

// putStream makes st idle again, or closes it when enough are.
func (r *remoteBackend) putStream(st *callStream) {
	r.mu.Lock()
	if !r.closed && len(r.idle) < maxIdleStreams {
		r.streams[st] = true
		r.idle = append(r.idle, st)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.dropStream(st)
}

// dropStream closes st, which is not to be used again.
func (r *remoteBackend) dropStream(st *callStream) {
	r.mu.Lock()
	delete(r.streams, st)
	r.mu.Unlock()
	_ = st.cc.Close()
}

// closeStreams closes every stream, ending the calls in progress on them.
func (r *remoteBackend) closeStreams() {
	r.mu.Lock()
	r.closed = true
	streams := make([]*callStream, 0, len(r.streams))
	for st := range r.streams {
		streams = append(streams, st)
	}
	r.idle = nil
	r.mu.Unlock()
	for _, st := range streams {
		_ = st.cc.Close()
	}
}
