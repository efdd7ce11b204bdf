package interpreters

import (
	"context"
	"errors"
	"fmt"

	"github.com/subinterp/subinterp/protocol"
)

// kindError is a sentinel whose parent it also matches, mirroring CPython's
// exception classes (InterpreterNotFoundError is an InterpreterError).
type kindError struct {
	msg    string
	parent error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.parent }

// Sentinel errors, matched with errors.Is. ErrInterpreterNotFound,
// ErrAlreadyRunning and *ExecutionFailed also match ErrInterpreter.
var (
	// ErrInterpreter is the root of interpreter errors (InterpreterError).
	ErrInterpreter = errors.New("interpreter error")
	// ErrInterpreterNotFound: no such interpreter, or it has been closed.
	ErrInterpreterNotFound error = &kindError{"interpreter not found", ErrInterpreter}
	// ErrAlreadyRunning: a call is in progress in the interpreter.
	ErrAlreadyRunning error = &kindError{"interpreter already running", ErrInterpreter}
	// ErrNotShareable: a value cannot be copied between interpreters.
	ErrNotShareable = errors.New("not shareable")
	// ErrInvalidArgument: an argument is malformed (a negative ID, a bad name).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrQueueEmpty: Get found the queue empty, or timed out.
	ErrQueueEmpty = errors.New("queue is empty")
	// ErrQueueFull: Put found the queue full, or timed out.
	ErrQueueFull = errors.New("queue is full")
	// ErrQueueNotFound: no such queue.
	ErrQueueNotFound = errors.New("queue not found")
	// ErrItemInterpreterDestroyed: the item's interpreter is gone and the
	// item was put with UnboundError.
	ErrItemInterpreterDestroyed = errors.New("item's interpreter destroyed")
	// ErrPoolShutdown: the pool no longer takes tasks.
	ErrPoolShutdown = errors.New("pool is shut down")
	// ErrMemoryLimit: the interpreter went past its memory limit.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrCPULimit: the call went past its CPU time limit.
	ErrCPULimit = errors.New("CPU time limit exceeded")
	// ErrOutputLimit: the call wrote more than its output limit.
	ErrOutputLimit = errors.New("output limit exceeded")
	// ErrUnavailable: a runtime from Dial cannot reach its daemon, or lost
	// the connection to it. Whether a call in flight at that moment ran is
	// unknown.
	ErrUnavailable error = &kindError{"interpreter daemon unavailable", ErrInterpreter}
	// ErrPermissionDenied: the daemon refused the client: a Unix socket
	// peer whose user it does not allow, or a wrong or missing token; or a
	// cluster's NATS refused the token or credentials file given.
	ErrPermissionDenied error = &kindError{"permission denied by the interpreter daemon", ErrInterpreter}
	// ErrNodeLost: the cluster node hosting the interpreter stopped
	// answering and was declared lost; the interpreter is gone with it, so
	// this also matches ErrInterpreterNotFound. A call in flight at that
	// moment may or may not have run.
	ErrNodeLost error = &kindError{"cluster node lost", ErrInterpreterNotFound}
)

// opError is an error with its own message that matches a sentinel and,
// optionally, a cause such as a context error.
type opError struct {
	msg   string
	kind  error
	cause error
}

func (e *opError) Error() string { return e.msg }

func (e *opError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

func errorf(kind error, format string, args ...any) error {
	return &opError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// ExecutionFailed is an uncaught Lua error in an interpreter.
type ExecutionFailed struct {
	InterpreterID int64
	Type          string // "LuaError" for a string error; a table error's type field; "SyntaxError"; "SystemExit"
	Msg           string // the message; for error("x", 0) exactly "x"
	Formatted     string // Type + ": " + Msg
	Errdisplay    string // the Lua traceback as the interpreter rendered it

	limit error // the limit sentinel behind a MemoryError, if any
}

func (e *ExecutionFailed) Error() string {
	return e.Formatted + "\n\nUncaught in the interpreter:\n\n" + e.Errdisplay
}

// Is makes an ExecutionFailed match ErrInterpreter, and the limit that
// raised it (a MemoryError matches ErrMemoryLimit).
func (e *ExecutionFailed) Is(target error) bool {
	return target == ErrInterpreter || (e.limit != nil && target == e.limit)
}

// WorkerExitError reports that an interpreter's worker process ended under
// a call. The interpreter is gone.
type WorkerExitError struct {
	InterpreterID int64
	ExitCode      int    // -1 when killed by a signal
	Signal        string // "killed", "segmentation fault", … or ""
	StderrTail    string // the last lines the worker wrote to stderr

	limit error // ErrMemoryLimit when the kernel's memory limit ended it
}

func (e *WorkerExitError) Error() string {
	how := fmt.Sprintf("exited with code %d", e.ExitCode)
	if e.Signal != "" {
		how = "was " + e.Signal
	}
	msg := fmt.Sprintf("interpreter %d: worker process %s", e.InterpreterID, how)
	if e.limit != nil {
		msg += " (" + e.limit.Error() + ")"
	}
	if e.StderrTail != "" {
		msg += "\n" + e.StderrTail
	}
	return msg
}

// Is makes a WorkerExitError match ErrInterpreter, and ErrMemoryLimit when
// the memory limit ended the worker.
func (e *WorkerExitError) Is(target error) bool {
	return target == ErrInterpreter || (e.limit != nil && target == e.limit)
}

// ResourceError reports that Create could not start a worker because the
// machine ran out of something it needs. It matches ErrInterpreter; the
// interpreters already running carry on.
type ResourceError struct {
	// Resource is what ran out: "processes" (pid_max, RLIMIT_NPROC, a
	// cgroup's pids.max), "threads", "file descriptors" (RLIMIT_NOFILE,
	// which the Go runtime raises to its hard limit at start, or the
	// system's file table) or "memory".
	Resource string
	Msg      string
}

func (e *ResourceError) Error() string { return e.Msg }

// Is makes a ResourceError match ErrInterpreter.
func (e *ResourceError) Is(target error) bool { return target == ErrInterpreter }

var codeSentinels = map[protocol.Code]error{
	protocol.CodeInterpreter:      ErrInterpreter,
	protocol.CodeNotFound:         ErrInterpreterNotFound,
	protocol.CodeAlreadyRunning:   ErrAlreadyRunning,
	protocol.CodeNotShareable:     ErrNotShareable,
	protocol.CodeInvalidArgument:  ErrInvalidArgument,
	protocol.CodeQueueEmpty:       ErrQueueEmpty,
	protocol.CodeQueueFull:        ErrQueueFull,
	protocol.CodeQueueNotFound:    ErrQueueNotFound,
	protocol.CodeItemDestroyed:    ErrItemInterpreterDestroyed,
	protocol.CodePoolShutdown:     ErrPoolShutdown,
	protocol.CodeMemoryLimit:      ErrMemoryLimit,
	protocol.CodeCPULimit:         ErrCPULimit,
	protocol.CodeOutputLimit:      ErrOutputLimit,
	protocol.CodeCanceled:         context.Canceled,
	protocol.CodeDeadlineExceeded: context.DeadlineExceeded,
	protocol.CodeUnavailable:      ErrUnavailable,
	protocol.CodeNodeLost:         ErrNodeLost,
	protocol.CodePermissionDenied: ErrPermissionDenied,
}

// fromWire turns a wire error into the public error it stands for.
func fromWire(err error) error {
	var e *protocol.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Code {
	case protocol.CodeExecutionFailed:
		return &ExecutionFailed{
			InterpreterID: e.InterpreterID,
			Type:          e.Type,
			Msg:           e.Msg,
			Formatted:     e.Formatted,
			Errdisplay:    e.Errdisplay,
			limit:         codeSentinels[e.Cause],
		}
	case protocol.CodeResource:
		return &ResourceError{Resource: e.Resource, Msg: e.Msg}
	case protocol.CodeWorkerExit:
		return &WorkerExitError{
			InterpreterID: e.InterpreterID,
			ExitCode:      e.ExitCode,
			Signal:        e.Signal,
			StderrTail:    e.StderrTail,
			limit:         codeSentinels[e.Cause],
		}
	}
	kind := codeSentinels[e.Code]
	if kind == nil {
		kind = ErrInterpreter
	}
	msg := e.Msg
	if msg == "" {
		msg = kind.Error()
	}
	return &opError{msg: msg, kind: kind, cause: codeSentinels[e.Cause]}
}
