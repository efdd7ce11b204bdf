package supervisor

import (
	"context"
	"io"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Exec runs src in id's globals.
func (s *Supervisor) Exec(ctx context.Context, id int64, src string) error {
	_, err := s.call(ctx, id, protocol.MethodExec, func(timeout int64) any {
		return &protocol.ExecParams{Source: src, TimeoutNs: timeout}
	})
	return err
}

// Call calls the function expression fn in id with args, a msgpack array
// of fallback-tier values, and returns the results as a msgpack array. The
// queues inside the results are retained once each for the host.
func (s *Supervisor) Call(ctx context.Context, id int64, fn string, args []byte) ([]byte, error) {
	return s.callIn(ctx, id, fn, args, 0)
}

// callIn is Call on behalf of interpreter by (0: the host).
func (s *Supervisor) callIn(ctx context.Context, id int64, fn string, args []byte, by int64) ([]byte, error) {
	s.holdQueues(id, args)
	res, err := s.call(ctx, id, protocol.MethodCall, func(timeout int64) any {
		return &protocol.CallParams{Fn: fn, Args: args, TimeoutNs: timeout}
	})
	if err == nil {
		s.deliver(by, res)
	}
	return res, err
}

// PrepareMain binds the entries of names, a msgpack map of strict-tier
// values, as globals of id: all or none.
func (s *Supervisor) PrepareMain(ctx context.Context, id int64, names []byte) error {
	s.holdQueues(id, names)
	_, err := s.call(ctx, id, protocol.MethodPrepareMain, func(int64) any {
		return &protocol.PrepareMainParams{Names: names}
	})
	if err == nil {
		if it, gerr := s.get(id); gerr == nil && it.policy != nil {
			it.bindMu.Lock()
			it.bindings = append(it.bindings, names) // replayed into a restarted worker
			it.bindMu.Unlock()
		}
	}
	return err
}

// Stats asks id's worker for its resource use. It does not count as a
// call: it works while the interpreter is running.
func (s *Supervisor) Stats(ctx context.Context, id int64) (protocol.WorkerStats, error) {
	var st protocol.WorkerStats
	it, err := s.get(id)
	if err != nil {
		return st, err
	}
	p := it.p()
	res, err := p.peer.Call(ctx, protocol.MethodStats, nil)
	if err != nil {
		return st, s.sessionError(it, p, err)
	}
	if err := msgpack.Unmarshal(res, &st); err != nil {
		return st, protocol.Errorf(protocol.CodeProtocol, "stats: %v", err)
	}
	return st, nil
}

// call runs one method in an interpreter: it claims the running state,
// forwards cancellation, and kills the worker when a cancelled call does not
// stop within the grace period, so a call never hangs.
func (s *Supervisor) call(ctx context.Context, id int64, method string, params func(timeoutNs int64) any) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, protocol.AsError(err)
	}
	it, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if it.restarting.Load() || !it.running.CompareAndSwap(false, true) {
		return nil, alreadyRunning(id)
	}
	defer it.running.Store(false)
	if it.closing.Load() {
		return nil, notFound(id)
	}
	it.calls.Add(1)
	if w, ok := ctx.Value(outputKey{}).(io.Writer); ok && w != nil {
		it.callOut.Store(&w)
		defer it.callOut.Store(nil)
	}

	// The worker enforces the deadline itself, without a round trip; the
	// supervisor only steps in when the worker cannot.
	timeout := it.limits.CallTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); timeout == 0 || d < timeout {
			timeout = max(d, 1)
		}
	}
	p := it.p()
	c, err := p.peer.Go(method, params(int64(timeout)))
	if err != nil {
		return nil, s.sessionError(it, p, err)
	}
	var hardStop <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout + s.cfg.KillGrace)
		defer t.Stop()
		hardStop = t.C
	}
	var interrupted error // why the caller gave up, if it did
	select {
	case <-c.Done:
	case <-ctx.Done():
		interrupted = ctx.Err()
		_ = p.peer.Notify(protocol.MethodCancel, c.ID)
		grace := time.NewTimer(s.cfg.KillGrace)
		select {
		case <-c.Done:
		case <-grace.C:
			p.runner.signal(syscall.SIGKILL)
			<-c.Done
			p.deathCause() // the interpreter is gone (or restarting) when the caller hears
		}
		grace.Stop()
	case <-hardStop:
		interrupted = context.DeadlineExceeded
		p.runner.signal(syscall.SIGKILL)
		<-c.Done
		p.deathCause()
	}
	if c.Err == nil {
		return c.Result, nil
	}
	e := protocol.AsError(c.Err)
	if e.InterpreterID == 0 {
		cp := *e // c.Err may be shared (ErrPeerClosed): never write to it
		cp.InterpreterID = id
		e = &cp
	}
	if interrupted != nil {
		// Whatever the worker said, the caller's reason is the answer; a
		// killed worker also means the interpreter is gone.
		ie := protocol.AsError(interrupted)
		ie.InterpreterID = id
		if e.Code == protocol.CodeClosed {
			ie.Msg += ": the interpreter did not stop and its worker was killed"
		}
		return nil, ie
	}
	if e.Code == protocol.CodeClosed {
		return nil, s.sessionError(it, p, c.Err)
	}
	return nil, e
}

// sessionError explains a failed session with worker p: an interpreter
// being closed is not found; one whose worker died reports how it died.
func (s *Supervisor) sessionError(it *interp, p *process, err error) error {
	e := protocol.AsError(err)
	if e.Code != protocol.CodeClosed {
		return e
	}
	if it.closing.Load() {
		return notFound(it.id)
	}
	if exitErr := p.deathCause(); exitErr != nil {
		return exitErr
	}
	return notFound(it.id)
}
