package interpreters

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// readAnswer reads st until the response to request id, writing the
// output that precedes it and serving the host function calls its scripts
// make meanwhile, under ctx. A *protocol.Error is the daemon's answer; any
// other error is the stream's.
//
// A host function is the client's code and may ignore its context, so at
// the call's first host call the reading moves off the caller's goroutine
// (protocol.CallMove); the call ends with ctx, its deadline, or the daemon
// cancelling it (the worker died).
func (r *remoteBackend) readAnswer(ctx context.Context, st *callStream, id uint32) ([]byte, error) {
	l := &streamCall{r: r, st: st, ctx: ctx, id: id}
	defer l.end()
	return l.read(nil)
}

// streamCall is the reading of one call's stream until its response.
type streamCall struct {
	r    *remoteBackend
	st   *callStream
	ctx  context.Context
	id   uint32
	move *protocol.CallMove // set once the reading has moved
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
		case m.Kind == protocol.KindRequest && m.Method == protocol.MethodHostCall && l.move == nil:
			return l.moveReading(m)
		case m.Kind == protocol.KindRequest:
			res, rerr, ok := l.serve(m)
			if !ok {
				return nil, protocol.ErrMoved // the caller reads on
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

// moveReading serves host call m, and the rest of the call, on a goroutine
// of its own.
func (l *streamCall) moveReading(m *protocol.Message) ([]byte, error) {
	var p protocol.HostCallParams
	_ = msgpack.Unmarshal(m.Body, &p) // a bad one is refused when served
	end, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if p.TimeoutNs > 0 {
		// Every host call of a call has the call's deadline.
		var cancelDeadline context.CancelFunc
		end, cancelDeadline = context.WithDeadline(end, time.Now().Add(time.Duration(p.TimeoutNs)))
		defer cancelDeadline()
	}
	l.move = protocol.NewCallMove(end)
	l.st.hostMu.Lock()
	l.st.hostStop, l.st.hostFrom = cancel, m.ID
	if l.st.cancelTo >= m.ID {
		cancel() // the daemon cancelled before this was read
	}
	l.st.hostMu.Unlock()
	return l.move.Run(l.st.cc, func() ([]byte, error) { return l.read(m) }, func() ([]byte, error) { return l.read(nil) })
}

// serve serves request m; ok is false when the call ended while its host
// function ran, and the caller has answered for it.
func (l *streamCall) serve(m *protocol.Message) (res any, err error, ok bool) {
	if m.Method != protocol.MethodHostCall {
		return nil, protocol.Errorf(protocol.CodeProtocol, "protocol: %q is not served on a call stream", m.Method), true
	}
	if err := l.move.Begin(m.ID); err != nil {
		return nil, err, true // the call has ended: the function is not started
	}
	end := l.move.End()
	res, err = protocol.Handle(l.r.host.serve)(end, m.Body)
	if err != nil && end.Err() != nil {
		// It gave up because its call ended: the call's end is the answer.
		err = protocol.AsError(end.Err())
	}
	return res, err, l.move.Returned()
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
