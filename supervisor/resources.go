package supervisor

import (
	"errors"
	"strings"
	"syscall"

	"github.com/subinterp/subinterp/protocol"
)

// creationFailed is the error of a Create whose worker did not start. When
// the machine ran out of something a worker needs, it says which
// (protocol.CodeResource): the interpreters already running carry on, and
// a Create may succeed again once some are closed.
func creationFailed(err error) *protocol.Error {
	// A worker's own answer (an init script's error) is no machine's limit.
	var answered *protocol.Error
	if r := outOf(err); r != "" && !errors.As(err, &answered) {
		return &protocol.Error{Code: protocol.CodeResource, Resource: r,
			Msg: "interpreter creation failed: out of " + r + ": " + err.Error()}
	}
	return &protocol.Error{Code: protocol.CodeInterpreter, Msg: "interpreter creation failed: " + err.Error()}
}

// threadFailures and memoryFailures are what a worker's runtime says on
// stderr as it dies for want of a thread or of memory: Go's own runtime,
// and its cgo runtime.
var (
	threadFailures = []string{"failed to create new OS thread", "pthread_create failed"}
	memoryFailures = []string{"cannot allocate memory", "fatal error: out of memory"}
)

// outOf names the resource err says the machine ran out of, or "". A fork
// that fails with EAGAIN hit a limit on processes (pid_max, RLIMIT_NPROC, a
// cgroup's pids.max); a worker that died starting its threads says so in
// the stderr the error quotes.
func outOf(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return protocol.ResourceDescriptors
	case errors.Is(err, syscall.EAGAIN):
		return protocol.ResourceProcesses
	case errors.Is(err, syscall.ENOMEM):
		return protocol.ResourceMemory
	}
	msg := err.Error()
	for _, s := range threadFailures {
		if strings.Contains(msg, s) {
			return protocol.ResourceThreads
		}
	}
	for _, s := range memoryFailures {
		if strings.Contains(msg, s) {
			return protocol.ResourceMemory
		}
	}
	return ""
}
