package worker

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

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
		os.Getenv(protocol.Handshake.MagicCookieKey) == protocol.Handshake.MagicCookieValue
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
	// The worker must not read the host's terminal. The cookie stays set:
	// go-plugin's Serve checks it; a program a trusted script starts sees it
	// but is not started with protocol.WorkerArg, so it is no worker.
	if devnull, err := os.Open(os.DevNull); err == nil {
		os.Stdin = devnull
	}
	os.Unsetenv(protocol.WorkerConfigEnv)
	// One VM goroutine plus the session and the GC: more threads only cost
	// memory when many workers run side by side.
	if runtime.GOMAXPROCS(0) > 2 {
		runtime.GOMAXPROCS(2)
	}
	// A runaway Go recursion (deeply nested coroutines) should die small
	// and early rather than at the 1 GB default.
	debug.SetMaxStack(256 << 20)

	conn, err := inheritedConn(protocol.WorkerConnFD, "subinterp-session")
	if err != nil {
		fmt.Fprintf(os.Stderr, "subinterp worker: %v\n", err)
		return 2
	}
	// The call channel stays a blocking socket: the VM goroutine waiting
	// for the next call sleeps in read(2) and the kernel wakes its thread
	// directly, where the poller would add a wait in epoll and a hand-off
	// between threads to every call.
	syscall.CloseOnExec(protocol.WorkerCallFD)
	calls := os.NewFile(protocol.WorkerCallFD, "subinterp-calls")
	w := newWorker(cfg)
	w.serve(conn, protocol.NewCallConn(calls))
	go func() {
		// The session is the lifeline: when it ends the supervisor has
		// closed us or died, and the worker must not outlive it.
		<-w.peer.Done()
		os.Exit(0)
	}()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: protocol.Handshake,
		Plugins:         protocol.Plugins,
		Logger:          hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr, JSONFormat: true}),
	})
	return 0
}

// inheritedConn takes over the socket the supervisor passed as fd.
func inheritedConn(fd uintptr, name string) (net.Conn, error) {
	f := os.NewFile(fd, name)
	conn, err := net.FileConn(f)
	f.Close() // FileConn holds a close-on-exec duplicate: no child inherits it
	if err != nil {
		return nil, fmt.Errorf("no %s on fd %d: %v", name, fd, err)
	}
	return conn, nil
}
