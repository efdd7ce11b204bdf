package supervisor

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// InterpStatus describes a live interpreter for an operator: what List
// says, and the settings and history a listing leaves out.
type InterpStatus struct {
	Info
	// Restarting is set while a restart policy brings a new worker up.
	Restarting bool
	// Restartable is set when the interpreter has a restart policy, and so
	// can be restarted with RestartWorker.
	Restartable bool
	// Restarts counts the workers its restart policy brought back.
	Restarts int64
	// Limits are its limits, defaults included.
	Limits Limits
}

// info is what List says of it.
func (it *interp) info() Info {
	return Info{ID: it.id, Pid: it.p().pid(), Created: it.created, Running: it.running.Load() || it.restarting.Load(), Calls: it.calls.Load()}
}

// Statuses describes the live interpreters, oldest first.
func (s *Supervisor) Statuses() []InterpStatus {
	s.mu.RLock()
	out := make([]InterpStatus, 0, len(s.interps))
	for _, it := range s.interps {
		if it.closing.Load() {
			continue
		}
		out = append(out, InterpStatus{
			Info:        it.info(),
			Restarting:  it.restarting.Load(),
			Restartable: it.policy != nil,
			Restarts:    it.restarted.Load(),
			Limits:      it.limits,
		})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b InterpStatus) int { return int(a.ID - b.ID) })
	return out
}

// RestartWorker replaces id's worker with a new one, as its restart policy
// would after a crash, and returns once the old worker has been reaped; the
// new one comes up behind it (the policy's backoff waited, its init script
// run, the bindings replayed). A call in progress fails with its
// protocol.CodeWorkerExit error. The restart counts against the policy's
// MaxRestarts like any other, and the exit is among RecentExits but not
// among Totals' crashes. Only an interpreter with a restart policy can be
// restarted.
func (s *Supervisor) RestartWorker(id int64) error {
	it, err := s.get(id)
	if err != nil {
		return err
	}
	if it.policy == nil {
		return &protocol.Error{Code: protocol.CodeInvalidArgument, Msg: fmt.Sprintf("interpreter %d has no restart policy; close it instead", id), InterpreterID: id}
	}
	if it.restarting.Load() {
		return &protocol.Error{Code: protocol.CodeAlreadyRunning, Msg: fmt.Sprintf("interpreter %d is already restarting", id), InterpreterID: id}
	}
	it.restartAsked.Store(true)
	it.p().stop() // the watcher sees the worker end and restarts it
	return nil
}

// Exit is one worker that ended without being closed: it crashed, was
// killed, exited, or was restarted with RestartWorker.
type Exit struct {
	InterpreterID int64
	Pid           int
	At            time.Time
	// Err says how it ended: exit code or signal, the limit it hit
	// (Cause), and the tail of its stderr.
	Err *protocol.Error
	// Restart is set when the interpreter had a restart policy: it lives
	// on in a new worker unless the policy gave up.
	Restart bool
}

// RecentExits returns the workers that ended on their own, or by
// RestartWorker, newest first: the last exitLogSize of them.
func (s *Supervisor) RecentExits() []Exit {
	s.exits.mu.Lock()
	defer s.exits.mu.Unlock()
	out := slices.Clone(s.exits.ring)
	slices.Reverse(out)
	return out
}

// exitLogSize is how many exits RecentExits remembers: as many as the
// deaths notFound remembers.
const exitLogSize = diedLogSize

// exitLog keeps the last exitLogSize exits, oldest first.
type exitLog struct {
	mu   sync.Mutex
	ring []Exit
}

// recordExit notes how one of id's workers ended.
func (s *Supervisor) recordExit(it *interp, pid int, exitErr *protocol.Error) {
	cause := *exitErr // the caller's goes on to the failed call
	e := Exit{InterpreterID: it.id, Pid: pid, At: time.Now(), Err: &cause, Restart: it.policy != nil}
	s.exits.mu.Lock()
	defer s.exits.mu.Unlock()
	if len(s.exits.ring) == exitLogSize {
		s.exits.ring = append(s.exits.ring[:0], s.exits.ring[1:]...)
	}
	s.exits.ring = append(s.exits.ring, e)
}
