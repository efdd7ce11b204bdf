package protocol

import (
	"context"
	"fmt"
	"strings"
)

// Code classifies a wire error. Codes, not messages, decide how an error is
// matched on the other side, so a client can always tell why a call failed.
type Code string

// The error codes. Each maps to one sentinel of the interpreters package.
const (
	CodeInterpreter      Code = "interpreter"       // generic interpreter failure, "unrecognized" ops on main
	CodeNotFound         Code = "not_found"         // no such interpreter
	CodeAlreadyRunning   Code = "already_running"   // a call is in progress
	CodeExecutionFailed  Code = "execution_failed"  // an uncaught Lua error (Type, Msg, Errdisplay set)
	CodeNotShareable     Code = "not_shareable"     // a value cannot cross
	CodeInvalidArgument  Code = "invalid_argument"  // a malformed argument
	CodeQueueEmpty       Code = "queue_empty"       // get on an empty queue
	CodeQueueFull        Code = "queue_full"        // put on a full queue
	CodeQueueNotFound    Code = "queue_not_found"   // no such queue
	CodeItemDestroyed    Code = "item_destroyed"    // the item's interpreter is gone (UnboundError)
	CodeCanceled         Code = "canceled"          // the caller cancelled the call
	CodeDeadlineExceeded Code = "deadline_exceeded" // the call's deadline passed
	CodeMemoryLimit      Code = "memory_limit"      // the interpreter's memory limit
	CodeCPULimit         Code = "cpu_limit"         // the interpreter's CPU limit
	CodeOutputLimit      Code = "output_limit"      // the per-call output limit
	CodeWorkerExit       Code = "worker_exit"       // the worker process ended under the call
	CodeProtocol         Code = "protocol"          // a malformed or unexpected message
	CodeClosed           Code = "closed"            // the session is closed
	CodePoolShutdown     Code = "pool_shutdown"     // a pool no longer takes tasks
	CodeVersion          Code = "version"           // the peers speak different protocol versions
	CodeUnavailable      Code = "unavailable"       // the service cannot take the call now
	CodeNodeLost         Code = "node_lost"         // the cluster node hosting the interpreter was lost
	CodeResource         Code = "resource"          // the machine ran out of what a new worker needs (Resource set)
)

// The resources whose exhaustion fails a Create, as Error.Resource says.
const (
	ResourceProcesses   = "processes"        // no process could be forked: pid_max, RLIMIT_NPROC, a cgroup's pids.max
	ResourceThreads     = "threads"          // the new worker could not start its threads
	ResourceDescriptors = "file descriptors" // RLIMIT_NOFILE or the system's file table
	ResourceMemory      = "memory"           // no memory for the new process
)

// Error is the one error type that crosses the wire. Fields beyond Code and
// Msg are filled where they apply: Type, Formatted and Errdisplay for
// CodeExecutionFailed; ExitCode, Signal and StderrTail for CodeWorkerExit.
type Error struct {
	Code       Code   `msgpack:"code"`
	Msg        string `msgpack:"msg"`
	Type       string `msgpack:"type,omitempty"`
	Formatted  string `msgpack:"formatted,omitempty"`
	Errdisplay string `msgpack:"errdisplay,omitempty"`
	// Cause refines Code: an execution failure caused by a limit carries
	// the limit's code here (a MemoryError is both a script error and a
	// memory-limit error).
	Cause      Code   `msgpack:"cause,omitempty"`
	ExitCode   int    `msgpack:"exit_code,omitempty"`
	Signal     string `msgpack:"signal,omitempty"`
	StderrTail string `msgpack:"stderr_tail,omitempty"`
	// Resource is the resource that ran out, for CodeResource.
	Resource string `msgpack:"resource,omitempty"`
	// InterpreterID is the interpreter the error happened in, when known.
	InterpreterID int64 `msgpack:"interp,omitempty"`
}

func (e *Error) Error() string {
	if e.Formatted != "" {
		return e.Formatted
	}
	if e.Msg == "" {
		return string(e.Code)
	}
	return e.Msg
}

// Clipped returns e with each of its texts cut to at most n bytes, saying
// how much was cut: an error must stay small enough to be sent, whatever
// a script made its message.
func (e *Error) Clipped(n int) *Error {
	c := *e
	for _, s := range []*string{&c.Msg, &c.Type, &c.Formatted, &c.Errdisplay, &c.StderrTail} {
		if len(*s) > n {
			*s = fmt.Sprintf("%s… [%d more bytes]", strings.ToValidUTF8((*s)[:n], ""), len(*s)-n)
		}
	}
	return &c
}

// QueueWaitEnded is the error of a wait on queue id that ended before it
// was over: a get (code CodeQueueEmpty) or a put (CodeQueueFull) whose
// context ended with err, which becomes its cause.
func QueueWaitEnded(id int64, code Code, err error) *Error {
	state := "empty"
	if code == CodeQueueFull {
		state = "full"
	}
	return &Error{Code: code, Msg: fmt.Sprintf("queue %d is %s", id, state), Cause: AsError(err).Code}
}

// WaitEnded gives err, a wait's failure on queue id, as QueueWaitEnded
// says it when it carries code and ctx has ended (Ended: a deadline past
// counts before its timer fires); any other err comes back as it is.
func WaitEnded(ctx context.Context, id int64, code Code, err error) error {
	if cause := Ended(ctx); cause != nil && err != nil && AsError(err).Code == code {
		return QueueWaitEnded(id, code, cause)
	}
	return err
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Has reports whether e carries code c, as its Code or its Cause.
func (e *Error) Has(c Code) bool { return e != nil && (e.Code == c || e.Cause == c) }
