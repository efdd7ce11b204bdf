package worker

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/subinterp/subinterp/protocol"
)

func init() {
	if IsWorkerProcess() {
		os.Exit(Main())
	}
}

// IsWorkerProcess reports whether this process was started as a worker.
func IsWorkerProcess() bool {
	return len(os.Args) > 1 && os.Args[1] == protocol.WorkerArg &&
		os.Getenv(protocol.HandshakeCookieKey) == protocol.HandshakeCookieValue
}

// Main runs a worker process to its end and returns its exit code. It must
// run before anything writes to stdout: stdout carries go-plugin's handshake.
func Main() int {
	var cfg protocol.WorkerConfig
	if s := os.Getenv(protocol.WorkerConfigEnv); s != "" {
		if err := json.Unmarshal([]byte(s), &cfg); err != nil {
			fmt.Fprintf(os.Stderr, "subinterp worker: bad %s: %v\n", protocol.WorkerConfigEnv, err)
			return 2
		}
	}
	// The worker must not read the host's terminal. The cookie stays set: a
	// program a trusted script starts sees it but is not started with
	// protocol.WorkerArg, so it is no worker.
	if devnull, err := os.Open(os.DevNull); err == nil {
		os.Stdin = devnull
	}
	os.Unsetenv(protocol.WorkerConfigEnv)
	// The supervisor starts workers with one P (see supervisor's
	// workerEnv); programs a trusted script starts choose their own.
	os.Unsetenv("GOMAXPROCS")
	// A runaway Go recursion (deeply nested coroutines) should die small
	// and early rather than at the 1 GB default.
	debug.SetMaxStack(256 << 20)

	conn, err := inheritedFile(protocol.WorkerConnFD, "subinterp-session")
	if err != nil {
		fmt.Fprintf(os.Stderr, "subinterp worker: %v\n", err)
		return 2
	}
	// The call channel stays a blocking socket, read by this goroutine:
	// the one that runs package initialisation, which the runtime keeps on
	// the main thread until init returns, and so for the worker's life.
	// Waiting for a call, that thread sleeps in read(2) and the kernel
	// wakes it to run the call, with no hand-off between threads; were the
	// VM on another goroutine, the main thread would idle beside it. The
	// session goes through the runtime's poller, on one more thread.
	unix.CloseOnExec(protocol.WorkerCallFD)
	calls := os.NewFile(protocol.WorkerCallFD, "subinterp-calls")
	w := newWorker(cfg)
	w.serve(conn, protocol.NewCallConn(calls))
	if err := handshake(); err != nil {
		fmt.Fprintf(os.Stderr, "subinterp worker: handshake: %v\n", err)
		return 2
	}
	go func() {
		// The session is the lifeline: when it ends the supervisor has
		// closed us or died, and the worker must not outlive it.
		<-w.peer.Done()
		os.Exit(0)
	}()
	w.callLoop()
	return 0
}

// inheritedFile takes over the socket the supervisor passed as fd, made
// non-blocking so that the runtime's poller waits on it, and close-on-exec
// so that no program a script starts inherits it.
func inheritedFile(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("no %s on fd %d: %v", name, fd, err)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name), nil
}
