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
	// Both sockets are read through the runtime's poller, and calls run on
	// a goroutine of their own. The goroutine that runs package
	// initialisation is kept on the main thread until init returns, which
	// for a worker is never; were calls read there with a blocking read,
	// the runtime would take the P from that thread whenever it waits and
	// start another to poll the session. So an idle worker sleeps with one
	// thread in epoll_wait, the main one parked beside it, and the thread
	// the poller wakes runs the call itself.
	calls, err := inheritedFile(protocol.WorkerCallFD, "subinterp-calls")
	if err != nil {
		fmt.Fprintf(os.Stderr, "subinterp worker: %v\n", err)
		return 2
	}
	// The handshake goes first, while no goroutine of the worker's is
	// runnable: its write wakes the host, and when the monitor takes the P
	// from a system call with goroutines waiting, the runtime starts a
	// thread for them, which then idles for the worker's whole life.
	// Before serving, that happened in about half the workers.
	if err := handshake(); err != nil {
		fmt.Fprintf(os.Stderr, "subinterp worker: handshake: %v\n", err)
		return 2
	}
	w := newWorker(cfg)
	w.serve(conn, protocol.NewCallConn(calls))
	go w.callLoop()
	// The session is the lifeline: when it ends the supervisor has closed
	// us or died, and the worker must not outlive it.
	<-w.peer.Done()
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
