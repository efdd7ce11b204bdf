package supervisor

import (
	"context"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Exec runs src in id's globals, as the chunk name ("" for "<string>").
func (s *Supervisor) Exec(ctx context.Context, id int64, name, src string) error {
	_, err := s.call(ctx, id, protocol.MethodExec, func(timeout int64) any {
		return &protocol.ExecParams{Source: src, TimeoutNs: timeout, Name: name}
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
	s.qs.hold(id, protocol.QueueIDs(args)...)
	res, err := s.call(ctx, id, protocol.MethodCall, func(timeout int64) any {
		return &protocol.CallParams{Fn: fn, Args: args, TimeoutNs: timeout}
	})
	if err == nil {
		s.qs.deliver(by, res)
	}
	return res, err
}

// PrepareMain binds the entries of names, a msgpack map of strict-tier
// values, as globals of id: all or none.
func (s *Supervisor) PrepareMain(ctx context.Context, id int64, names []byte) error {
	s.qs.hold(id, protocol.QueueIDs(names)...)
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
		return nil, s.notFound(id)
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
	res, interrupted, killed, err := s.invoke(ctx, p, timeout, method, params(int64(timeout)), it.output)
	if err == nil {
		return res, nil
	}
	if it.closing.Load() {
		// Closed under the call: whatever the worker managed to say about
		// losing its supervisor, the interpreter is gone.
		return nil, s.notFound(id)
	}
	e := protocol.AsError(err)
	if e.InterpreterID == 0 {
		cp := *e // never write to an error that may be shared
		cp.InterpreterID = id
		e = &cp
	}
	if interrupted != nil {
		// Whatever the worker said, the caller's reason is the answer; a
		// killed worker also means the interpreter is gone.
		ie := protocol.AsError(interrupted)
		ie.InterpreterID = id
		if killed {
			ie.Msg += ": the interpreter did not stop and its worker was killed"
			p.deathCause() // the interpreter is gone (or restarting) when the caller hears
		}
		return nil, ie
	}
	if e.Code == protocol.CodeClosed {
		return nil, s.sessionError(it, p, err)
	}
	if e.Has(protocol.CodeDeadlineExceeded) {
		awaitDeadline(ctx)
	}
	return nil, e
}

// awaitDeadline waits for ctx's deadline when the worker's timer, started
// from that deadline, fired a moment before it: the caller then sees
// ctx.Err() match the error it got. A deadline further off means the
// interpreter's own call timeout fired; that one is not waited for.
func awaitDeadline(ctx context.Context) {
	dl, ok := ctx.Deadline()
	left := time.Until(dl)
	if !ok || ctx.Err() != nil || left > 100*time.Millisecond {
		return // no deadline of the caller's, or the call's own timeout fired
	}
	t := time.NewTimer(left + 10*time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// invoke makes one call on p's call channel under ctx and the timeout: it
// reports whether the caller's context or the timeout interrupted it, and
// whether the worker had to be killed. One call at a time per process.
func (s *Supervisor) invoke(ctx context.Context, p *process, timeout time.Duration, method string, params any, out func([]byte)) (res []byte, interrupted error, killed bool, err error) {
	p.callID++
	w := &watchdog{s: s, p: p, callID: p.callID}
	stopCancel := context.AfterFunc(ctx, func() { w.interrupt(ctx.Err()) })
	if timeout > 0 {
		w.hard = time.AfterFunc(timeout+s.cfg.KillGrace, func() { w.kill(context.DeadlineExceeded) })
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout + requestGrace)
	}
	res, err = p.roundTrip(ctx, deadline, w.callID, method, params, out)
	stopCancel()
	interrupted, killed = w.finish()
	if interrupted == nil && err != nil && ctx.Err() != nil {
		// The call failed as its context ended, before the watchdog heard:
		// a request the supervisor ended for that reason failed it first.
		interrupted = ctx.Err()
	}
	return res, interrupted, killed, err
}

// requestGrace is how long past a call's timeout the worker's requests are
// served: the worker's own timer fires first and reports the timeout, not
// a failed request the script could catch.
const requestGrace = 20 * time.Millisecond

// watchdog watches one call: it forwards the caller's cancellation to the
// worker and kills a worker that does not stop in time.
type watchdog struct {
	s      *Supervisor
	p      *process
	callID uint32

	mu          sync.Mutex
	done        bool
	interrupted error
	killed      bool
	grace, hard *time.Timer
}

// interrupt asks the worker to stop the call, and arms the kill.
func (w *watchdog) interrupt(why error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.interrupted != nil {
		return
	}
	w.interrupted = why
	_ = w.p.peer.Notify(protocol.NotifyCallCancel, w.callID)
	w.grace = time.AfterFunc(w.s.cfg.KillGrace, func() { w.kill(why) })
}

// kill ends a worker whose call would not stop; its interpreter is gone.
func (w *watchdog) kill(why error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if w.interrupted == nil {
		w.interrupted = why
	}
	w.killed = true
	w.p.runner.signal(syscall.SIGKILL)
}

// finish ends the watch once the call has returned.
func (w *watchdog) finish() (interrupted error, killed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	for _, t := range []*time.Timer{w.grace, w.hard} {
		if t != nil {
			t.Stop()
		}
	}
	return w.interrupted, w.killed
}

// sessionError explains a failed session with worker p: an interpreter
// being closed is not found; one whose worker died reports how it died.
func (s *Supervisor) sessionError(it *interp, p *process, err error) error {
	e := protocol.AsError(err)
	if e.Code != protocol.CodeClosed {
		return e
	}
	if it.closing.Load() {
		return s.notFound(it.id)
	}
	if exitErr := p.deathCause(); exitErr != nil {
		return exitErr
	}
	return s.notFound(it.id)
}
