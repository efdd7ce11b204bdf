package interpreters

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// readAnswer reads st until the response to request id, writing the
// output that precedes it and serving the host function calls its scripts
// make meanwhile, under ctx. A *protocol.Error is the daemon's answer; any
// other error is the stream's.
//
// A host function is the client's code and may ignore its context, so it
// never runs on the caller's goroutine: at the call's first host call the
// reading moves to a goroutine of its own, which runs that function and
// every later one inline, and the caller waits for it or for the end of
// the call (ctx, the call's deadline, or the daemon cancelling: the worker
// died), whichever comes first. If the call ends while a function runs,
// the caller answers the daemon in its place and reads on; what the
// function returns late is dropped. A call making many host calls so pays
// for one hand-off, not one each.
func (r *remoteBackend) readAnswer(ctx context.Context, st *callStream, id uint32) ([]byte, error) {
	l := &streamCall{r: r, st: st, ctx: ctx, id: id}
	defer l.end()
	return l.read(nil)
}

// streamCall is the reading of one call's stream until its response.
type streamCall struct {
	r   *remoteBackend
	st  *callStream
	ctx context.Context
	id  uint32

	// Set when the reading moves, before the reading goroutine starts.
	hostEnd context.Context // ends with the call

	mu      sync.Mutex
	inHost  bool   // a host function is running
	hostID  uint32 // the host call it serves
	rescued bool   // the caller answered it and reads on
}

// read reads until the call's response, serving first, when it is set.
func (l *streamCall) read(first *protocol.Message) ([]byte, error) {
	for {
		m := first
		first = nil
		if m == nil {
			var err error
			if m, err = l.st.cc.Read(); err != nil {
				return nil, err
			}
		}
		switch {
		case m.Kind == protocol.KindNotification && m.Method == protocol.NotifyOutput:
			l.r.output(m.Body)
		case m.Kind == protocol.KindRequest && m.Method == protocol.MethodHostCall && l.hostEnd == nil:
			return l.moveReading(m)
		case m.Kind == protocol.KindRequest:
			res, rerr, ok := l.serve(m)
			if !ok {
				return nil, errRescued
			}
			if err := l.st.cc.Respond(m.ID, protocol.AsError(rerr), res); err != nil {
				return nil, err
			}
		case m.Kind == protocol.KindResponse && m.ID == l.id:
			if m.Error != nil {
				return nil, m.Error
			}
			return m.Body, nil
		}
	}
}

// errRescued ends a reading goroutine whose host function outlived its
// call: the caller answered the daemon and read on.
var errRescued = errors.New("interpreters: the call ended under a host function")

// moveReading serves host call m, and the rest of the call, on a goroutine
// of its own, and waits for it or for the end of the call.
func (l *streamCall) moveReading(m *protocol.Message) ([]byte, error) {
	var p protocol.HostCallParams
	_ = msgpack.Unmarshal(m.Body, &p) // a bad one is refused when served
	hostEnd, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if p.TimeoutNs > 0 {
		// Every host call of a call has the call's deadline.
		var cancelDeadline context.CancelFunc
		hostEnd, cancelDeadline = context.WithDeadline(hostEnd, time.Now().Add(time.Duration(p.TimeoutNs)))
		defer cancelDeadline()
	}
	l.hostEnd = hostEnd
	l.st.hostMu.Lock()
	l.st.hostStop, l.st.hostFrom = cancel, m.ID
	if l.st.cancelTo >= m.ID {
		cancel() // the daemon cancelled before this was read
	}
	l.st.hostMu.Unlock()

	type result struct {
		res []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := l.read(m)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-hostEnd.Done():
	}
	l.mu.Lock()
	rescue := l.inHost
	l.rescued = rescue
	hostID := l.hostID
	l.mu.Unlock()
	if !rescue {
		// The reading goroutine is reading; it runs no more host
		// functions.
		r := <-done
		return r.res, r.err
	}
	if err := l.st.cc.Respond(hostID, protocol.AsError(hostEnd.Err()), nil); err != nil {
		return nil, err
	}
	return l.read(nil)
}

// serve serves request m; ok is false when the call ended while its host
// function ran, and the caller has answered for it.
func (l *streamCall) serve(m *protocol.Message) (res any, err error, ok bool) {
	if m.Method != protocol.MethodHostCall {
		return nil, protocol.Errorf(protocol.CodeProtocol, "protocol: %q is not served on a call stream", m.Method), true
	}
	l.mu.Lock()
	if err := l.hostEnd.Err(); err != nil {
		l.mu.Unlock()
		return nil, protocol.AsError(err), true // not started at all
	}
	l.inHost, l.hostID = true, m.ID
	l.mu.Unlock()
	res, err = protocol.Handle(l.r.host.serve)(l.hostEnd, m.Body)
	if err != nil && l.hostEnd.Err() != nil {
		// It gave up because its call ended: the call's end is the answer.
		err = protocol.AsError(l.hostEnd.Err())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inHost = false
	return res, err, !l.rescued
}

// end forgets the call's host functions on the stream.
func (l *streamCall) end() {
	l.st.hostMu.Lock()
	l.st.hostStop = nil
	l.st.hostMu.Unlock()
}

// hostCancelled is the daemon's NotifyHostCancel: the call the named host
// call serves has ended.
func (r *remoteBackend) hostCancelled(body []byte) {
	var p protocol.StreamCancelParams
	if msgpack.Unmarshal(body, &p) != nil {
		return
	}
	r.mu.Lock()
	var target *callStream
	for st := range r.streams {
		if st.id == p.Stream {
			target = st
			break
		}
	}
	r.mu.Unlock()
	if target == nil {
		return
	}
	target.hostMu.Lock()
	defer target.hostMu.Unlock()
	target.cancelTo = max(target.cancelTo, p.Call)
	if target.hostStop != nil && p.Call >= target.hostFrom {
		target.hostStop()
	}
}
