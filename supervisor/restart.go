package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// Restart defaults.
const (
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultRestartMaxBackoff = 10 * time.Second
)

// RestartPolicy makes an interpreter survive its worker's death: a new
// worker is spawned under the same ID, InitScript runs in it, and the
// PrepareMain bindings made so far are replayed, in order. Globals set by
// Exec or Call are not replayed: they died with the worker. The call that
// was running when the worker died still fails with its *protocol.Error.
type RestartPolicy struct {
	// MaxRestarts bounds the restarts within Period; past it the
	// interpreter ends as if it had no policy.
	MaxRestarts int
	// Period is the window MaxRestarts counts in; 0 means forever.
	Period time.Duration
	// InitScript runs in every worker of the interpreter, the first
	// included, before anything else.
	InitScript string
	// Backoff is the wait before the first restart in a row; it doubles up
	// to MaxBackoff. 0 means DefaultRestartBackoff and
	// DefaultRestartMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// OnRestart, when set, is told of every attempt. It runs on the
	// supervisor's goroutine and must not block for long.
	OnRestart func(RestartEvent)
}

// RestartEvent reports one restart attempt.
type RestartEvent struct {
	InterpreterID int64
	Attempt       int             // 1 for the first restart in the window
	Cause         *protocol.Error // how the previous worker ended
	Err           error           // why the attempt failed; nil on success
	GaveUp        bool            // no more attempts: the interpreter has ended
}

// spawn starts a worker for it and prepares it: the init script, then the
// bindings to replay.
func (s *Supervisor) spawn(ctx context.Context, it *interp) (*process, error) {
	p, err := s.claimSpare(ctx, it)
	if p == nil {
		if p, err = s.startProcess(it.wcfg); err != nil {
			return nil, err
		}
		s.bind(p, it)
	}
	if it.policy == nil {
		return p, nil
	}
	if src := it.policy.InitScript; src != "" {
		if _, _, _, err := s.invoke(ctx, p, 0, protocol.MethodExec, &protocol.ExecParams{Source: src}, it.output); err != nil {
			p.stop()
			return nil, fmt.Errorf("init script: %w", err)
		}
	}
	it.bindMu.Lock()
	bindings := append([][]byte(nil), it.bindings...)
	it.bindMu.Unlock()
	for _, names := range bindings {
		if _, _, _, err := s.invoke(ctx, p, 0, protocol.MethodPrepareMain, &protocol.PrepareMainParams{Names: names}, nil); err != nil {
			p.stop()
			return nil, fmt.Errorf("replaying PrepareMain: %w", err)
		}
	}
	return p, nil
}

// restart brings up a new worker for it after its worker died with cause;
// it.restarting is set meanwhile and cleared on success. It reports false
// when the policy gives up or the interpreter is being closed; the caller
// then ends the interpreter.
func (s *Supervisor) restart(it *interp, cause *protocol.Error) bool {
	pol := it.policy
	backoff, maxBackoff := pol.Backoff, pol.MaxBackoff
	if backoff <= 0 {
		backoff = DefaultRestartBackoff
	}
	if maxBackoff <= 0 {
		maxBackoff = max(DefaultRestartMaxBackoff, backoff)
	}
	for {
		now := time.Now()
		recent := it.restarts[:0]
		for _, t := range it.restarts {
			if pol.Period <= 0 || now.Sub(t) < pol.Period {
				recent = append(recent, t)
			}
		}
		it.restarts = recent
		ev := RestartEvent{InterpreterID: it.id, Attempt: len(recent) + 1, Cause: cause}
		if len(recent) >= pol.MaxRestarts || it.closing.Load() {
			ev.GaveUp = true
			ev.Err = fmt.Errorf("interpreter %d: no restart left (%d in the window)", it.id, len(recent))
			s.notifyRestart(pol, ev)
			return false
		}
		it.restarts = append(it.restarts, now)
		select {
		case <-time.After(backoff):
		case <-it.gone:
			return false
		}
		backoff = min(backoff*2, maxBackoff)

		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartTimeout)
		p, err := s.spawn(ctx, it)
		cancel()
		if err != nil {
			ev.Err = err
			s.notifyRestart(pol, ev)
			continue
		}
		it.proc.Store(p)
		if it.closing.Load() {
			p.stop() // Close came while the worker started
			return false
		}
		s.restarted.Add(1)
		it.restarting.Store(false)
		s.cfg.Logger.Info("worker restarted", "interpreter", it.id, "pid", p.pid(), "attempt", ev.Attempt)
		s.notifyRestart(pol, ev)
		return true
	}
}

func (s *Supervisor) notifyRestart(pol *RestartPolicy, ev RestartEvent) {
	if pol.OnRestart != nil {
		pol.OnRestart(ev)
	}
}
