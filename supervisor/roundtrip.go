package supervisor

import (
	"context"
	"errors"
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
// blocked until the worker hears back anyway; but a host function, which
// may ignore its context, never runs on the caller's goroutine unless the
// functions are prompt (Hosting.Prompt): at the call's first, the reading
// moves to a goroutine of its own (protocol.CallMove).
func (p *process) roundTrip(ctx context.Context, deadline time.Time, id uint32, method string, params any, out func([]byte)) ([]byte, error) {
	p.yield.Yield()
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
	// goroutine (see roundTrip).
	handOff    bool
	unanswered error // the first failed notification

	// Set once the reading has moved, before the reading goroutine starts.
	move    *protocol.CallMove
	hostCtx context.Context // the move's end, as a host function gets it
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
		case m.Kind == protocol.KindRequest && m.Method == protocol.MethodHostCall && l.handOff && l.move == nil:
			return l.moveReading(m)
		case m.Kind == protocol.KindRequest:
			res, rerr, ok := l.serveRequest(m)
			if !ok {
				return nil, protocol.ErrMoved // the caller reads on
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

// moveReading serves host call m, and the rest of the call, on a goroutine
// of its own (protocol.CallMove). Host functions may run until the call's
// deadline, its cancellation, or the worker's death.
func (l *callLoop) moveReading(m *protocol.Message) ([]byte, error) {
	end, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if !l.deadline.IsZero() {
		var cancelDeadline context.CancelFunc
		end, cancelDeadline = context.WithDeadline(end, l.deadline.Add(-requestGrace))
		defer cancelDeadline()
	}
	defer context.AfterFunc(l.p.life, cancel)()
	l.move = protocol.NewCallMove(end)
	// Made once for every host call of the call: a host call costs no
	// context of its own.
	l.hostCtx = context.WithValue(end, hostReturnKey{}, l.move.Returned)
	res, err := l.move.Run(l.p.calls, func() ([]byte, error) { return l.read(m) }, func() ([]byte, error) { return l.read(nil) })
	if err != nil {
		if _, ok := err.(*protocol.Error); !ok {
			err = channelClosed(err)
		}
	}
	return res, err
}

// serveRequest serves request m; ok is false when the call ended while it
// ran a host function, and the caller has answered for it.
func (l *callLoop) serveRequest(m *protocol.Message) (res any, err error, ok bool) {
	if m.Method != protocol.MethodHostCall || l.move == nil {
		res, err = l.p.serve(l.ctx, l.deadline, m)
		return res, err, true
	}
	if err := l.move.Begin(m.ID); err != nil {
		return nil, err, true // the call has ended: the function is not started
	}
	if handle, herr := l.p.handler(m.Method); herr != nil {
		res, err = nil, herr
	} else {
		res, err = handle(l.hostCtx, m.Body)
	}
	return res, err, l.move.Returned()
}

// hostReturnKey is the context key of the function a host call's handler
// calls when the host function returns (protocol.CallMove.Returned); a
// false answer means the result is dropped.
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
