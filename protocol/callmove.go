package protocol

import (
	"context"
	"errors"
	"sync"
)

// CallMove moves the reading of one call's channel off the caller's
// goroutine, for a call that runs the host's functions.
//
// A host function is the host's code and may ignore its context, so it
// must not run on the caller's goroutine: the call could then not end at
// its deadline, cancellation or the peer's death. At the call's first host
// function the reading moves to a goroutine of its own (Run), which runs
// that function and every later one inline, bracketing each with Begin and
// Returned; the caller waits for it or for the end of the call. If the call
// ends while a function runs, the caller answers that host call with the
// end's error and reads on, and the function's result, when it comes, is
// not wanted. A call making many host calls pays for one hand-off, not one
// each.
type CallMove struct {
	end context.Context

	mu      sync.Mutex
	inHost  bool   // a host function is running
	hostID  uint32 // the request it serves
	rescued bool   // the caller answered it and reads on
}

// ErrMoved ends a reading goroutine whose host function outlived its
// call: the caller answered for it and read on.
var ErrMoved = errors.New("protocol: the call ended while a host function ran")

// NewCallMove is the move of a call that ends with end.
func NewCallMove(end context.Context) *CallMove { return &CallMove{end: end} }

// End is the context that ends with the call: the one host functions run
// under.
func (mv *CallMove) End() context.Context { return mv.end }

// Run runs read, the rest of the call's reading, on a goroutine of its
// own, and returns what it returns, or, should the call end while a host
// function runs, answers that host call on c and returns what readOn, the
// reading resumed on the caller's goroutine, returns.
func (mv *CallMove) Run(c *CallConn, read, readOn func() ([]byte, error)) ([]byte, error) {
	type result struct {
		res []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := read()
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-mv.end.Done():
	}
	mv.mu.Lock()
	rescue := mv.inHost
	mv.rescued = rescue
	hostID := mv.hostID
	mv.mu.Unlock()
	if !rescue {
		// The reading goroutine is reading, or serving a request that
		// ends with the call; Begin refuses it any more host functions.
		r := <-done
		return r.res, r.err
	}
	if err := c.Respond(hostID, AsError(mv.end.Err()), nil); err != nil {
		return nil, err
	}
	return readOn()
}

// Begin is called on the reading goroutine before the host function
// serving request id runs. A non-nil error means the call has ended: the
// function is not to run, and the error is the answer.
func (mv *CallMove) Begin(id uint32) *Error {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if err := mv.end.Err(); err != nil {
		return AsError(err)
	}
	mv.inHost, mv.hostID = true, id
	return nil
}

// Returned is called on the reading goroutine when the host function has
// returned; it reports whether its result is still wanted: false when the
// call ended first and the caller answered for it, and the reading
// goroutine is then to stop. It may be called more than once.
func (mv *CallMove) Returned() bool {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	mv.inHost = false
	return !mv.rescued
}
