package supervisor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// roundTrip makes one call on the call channel and reads until its
// response, handing the call's output to out and serving the requests the
// worker makes meanwhile (its Lua code using queues, other interpreters or
// host functions) under ctx, bounded by deadline when it is set. The
// caller guarantees one call at a time per process (the interpreter's
// running state). A read error means the worker is gone: it is returned as
// CodeClosed.
//
// A request sent as a notification (a put into an unbounded queue) gets no
// answer: it cannot fail unless the interpreter or the supervisor is being
// torn down, and if it does anyway, the call fails with its error.
//
// Requests are served on the goroutine reading the channel, which is
// blocked until the worker hears back anyway. A host function, though, is
// the host's code and may ignore its context; run on the caller's
// goroutine, it could keep the call from returning when the call ends. So
// at the call's first host function the reading moves to a goroutine of
// its own, which runs that function and every later one inline, and the
// caller waits for it or for the end of the call, whichever comes first;
// a call making many host calls pays for one hand-off, not one each. If
// the call ends while a host function runs, the caller answers the worker
// in its place and reads on; the function's late result is dropped.
func (p *process) roundTrip(ctx context.Context, deadline time.Time, id uint32, method string, params any, out func([]byte)) ([]byte, error) {
	if err := p.calls.Request(id, method, params); err != nil {
		if pe, ok := err.(*protocol.Error); ok {
			return nil, pe // not sent; the channel is intact
		}
		return nil, channelClosed(err)
	}
	l := &callLoop{p: p, ctx: ctx, deadline: deadline, id: id, out: out, handOff: !p.hostPrompt.Load()}
	return l.read(nil)
}

// callLoop is the reading of one call's channel until its response.
type callLoop struct {
	p        *process
	ctx      context.Context
	deadline time.Time
	id       uint32
	out      func([]byte)
	// handOff says a host function must not run on the caller's
	// goroutine (see roundTrip); false once the reading has moved.
	handOff    bool
	unanswered error // the first failed notification

	// The reading goroutine and the caller share these once the reading
	// has moved.
	mu      sync.Mutex
	hostEnd context.Context // ends with the call: how long a host function may run
	hostCtx context.Context // hostEnd as a host function gets it
	inHost  bool            // a host function is running
	hostID  uint32          // the request it serves
	rescued bool            // the caller answered it and reads on
}

// read reads until the call's response, serving first, when it is set.
func (l *callLoop) read(first *protocol.Message) ([]byte, error) {
	for {
		m := first
		first = nil
		if m == nil {
			var err error
			if m, err = l.p.calls.Read(); err != nil {
				return nil, channelClosed(err)
			}
		}
		switch {
		case m.Kind == protocol.KindNotification && m.Method == protocol.NotifyOutput:
			if l.out != nil {
				l.out(m.Body)
			}
		case m.Kind == protocol.KindNotification:
			if _, err := l.p.serve(l.ctx, l.deadline, m); err != nil && l.unanswered == nil {
				l.unanswered = err
			}
		case m.Kind == protocol.KindRequest && m.Method == protocol.MethodHostCall && l.handOff:
			l.handOff = false
			return l.moveReading(m)
		case m.Kind == protocol.KindRequest:
			res, rerr, ok := l.serveRequest(m)
			if !ok {
				return nil, errRescued // the caller reads on; this goroutine is done
			}
			if errors.Is(rerr, errAnswered) {
				continue
			}
			if err := l.p.calls.Respond(m.ID, protocol.AsError(rerr), res); err != nil {
				return nil, channelClosed(err)
			}
		case m.Kind == protocol.KindResponse && m.ID == l.id:
			if m.Error != nil {
				return nil, m.Error
			}
			if l.unanswered != nil {
				return nil, l.unanswered
			}
			return m.Body, nil
		}
	}
}

// errRescued ends a reading goroutine whose host function outlived its
// call: the caller answered the worker and read on.
var errRescued = errors.New("supervisor: the call ended under a host function")

// moveReading serves host call m, and the rest of the call, on a goroutine
// of its own, and waits for it or for the end of the call.
func (l *callLoop) moveReading(m *protocol.Message) ([]byte, error) {
	hostEnd, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if !l.deadline.IsZero() {
		var cancelDeadline context.CancelFunc
		hostEnd, cancelDeadline = context.WithDeadline(hostEnd, l.deadline.Add(-requestGrace))
		defer cancelDeadline()
	}
	defer context.AfterFunc(l.p.life, cancel)()
	l.hostEnd = hostEnd
	// Made once for every host call of the call: a host call costs no
	// context of its own.
	l.hostCtx = context.WithValue(hostEnd, hostReturnKey{}, l.hostReturned)

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
		// The reading goroutine is reading, or serving a request that
		// ends with the call; it runs no more host functions.
		r := <-done
		return r.res, r.err
	}
	if err := l.p.calls.Respond(hostID, protocol.AsError(hostEnd.Err()), nil); err != nil {
		return nil, channelClosed(err)
	}
	return l.read(nil)
}

// serveRequest serves request m; ok is false when the call ended while it
// ran a host function, and the caller has answered for it.
func (l *callLoop) serveRequest(m *protocol.Message) (res any, err error, ok bool) {
	if m.Method != protocol.MethodHostCall || l.hostEnd == nil {
		res, err = l.p.serve(l.ctx, l.deadline, m)
		return res, err, true
	}
	l.mu.Lock()
	if err := l.hostEnd.Err(); err != nil {
		// The call has ended: the function is not started at all.
		l.mu.Unlock()
		return nil, protocol.AsError(err), true
	}
	l.inHost, l.hostID = true, m.ID
	l.mu.Unlock()
	if handle, herr := l.p.handler(m.Method); herr != nil {
		res, err = nil, herr
	} else {
		res, err = handle(l.hostCtx, m.Body)
	}
	return res, err, l.hostReturned()
}

// hostReturned records that the running host function returned, and
// reports whether its result is still wanted: false when the call ended
// first and the caller answered in its place. It may be called more than
// once.
func (l *callLoop) hostReturned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inHost = false
	return !l.rescued
}

// hostReturnKey is the context key of the function a host call's handler
// calls when the host function returns (callLoop.hostReturned); a false
// answer means the result is dropped.
type hostReturnKey struct{}

// serve answers a request the worker made in the middle of a call; the
// request ends with the call's context, its deadline, or the worker.
func (p *process) serve(ctx context.Context, deadline time.Time, m *protocol.Message) (any, error) {
	handle, err := p.handler(m.Method)
	if err != nil {
		return nil, err
	}
	var cancel context.CancelFunc
	if deadline.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	stop := context.AfterFunc(p.life, cancel)
	defer stop()
	if !deadline.IsZero() {
		ctx = context.WithValue(ctx, callDeadlineKey{}, deadline.Add(-requestGrace))
	}
	if m.Kind == protocol.KindRequest {
		// A handler that waits may have its answer written by whoever ends
		// the wait, and then returns errAnswered.
		id := m.ID
		ctx = context.WithValue(ctx, respondKey{}, func(result any) bool {
			return p.calls.Respond(id, nil, result) == nil
		})
	}
	return handle(ctx, m.Body)
}

// handler is the handler of the worker's requests of method.
func (p *process) handler(method string) (protocol.Handler, error) {
	h := p.handlers.Load()
	if h == nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "a spare worker has no interpreter")
	}
	handle := (*h)[method]
	if handle == nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "unknown method %q", method)
	}
	return handle, nil
}

// channelClosed is a call channel's failure: the worker is gone.
func channelClosed(err error) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeClosed, Msg: "worker call channel: " + err.Error()}
}
