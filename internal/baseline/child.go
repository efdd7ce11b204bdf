package baseline

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Child roles. Each is both os.Args[1] of the child and the value of roleEnv.
const (
	rawRole    = "__subinterp_baseline_raw__"
	relayRole  = "__subinterp_baseline_relay__"
	pluginRole = "__subinterp_baseline_plugin__"
)

// roleEnv must equal os.Args[1] for a process to act as a child.
const roleEnv = "SUBINTERP_BASELINE_ROLE"

// upstreamEnv is the socket a relay child forwards to.
const upstreamEnv = "SUBINTERP_BASELINE_UPSTREAM"

// Descriptors a child inherits; exec.Cmd.ExtraFiles[i] becomes fd 3+i.
const (
	rawListenerFD    = 3 // the unix listener the parent created
	rawLifelineFD    = 4
	pluginLifelineFD = 3
)

// startTimeout bounds how long a parent waits for a new child to serve, so
// a broken child fails the benchmark instead of hanging it.
const startTimeout = 10 * time.Second

func init() {
	// A child must never fall through to main: in a test binary that would
	// run the tests again, and they would spawn children of their own.
	switch childRole() {
	case rawRole:
		os.Exit(serveRaw(echoConn))
	case relayRole:
		up := os.Getenv(upstreamEnv)
		os.Exit(serveRaw(func(c net.Conn) { relayConn(c, up) }))
	case pluginRole:
		os.Exit(servePlugin())
	}
}

func childRole() string {
	if len(os.Args) < 2 {
		return ""
	}
	role := os.Args[1]
	if role != rawRole && role != relayRole && role != pluginRole {
		return ""
	}
	if os.Getenv(roleEnv) != role {
		return ""
	}
	return role
}

// exitWithParent ends the process once the parent's end of the lifeline is
// closed, which happens when the parent exits for any reason.
func exitWithParent(fd uintptr) {
	f := os.NewFile(fd, "lifeline")
	go func() {
		_, _ = io.Copy(io.Discard, f)
		os.Exit(0)
	}()
}

// serveRaw serves each connection to the inherited listener with serve,
// on a goroutine of its own.
func serveRaw(serve func(net.Conn)) int {
	exitWithParent(rawLifelineFD)
	f := os.NewFile(rawListenerFD, "listener")
	ln, err := net.FileListener(f)
	_ = f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseline raw child:", err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "baseline raw child:", err)
			return 1
		}
		go serve(c)
	}
}

// relayConn forwards each frame of c to the socket up, on a connection of
// its own, and its answer back: one goroutine reads and writes both, as a
// daemon's call stream does, so a round trip through it is the floor of
// two hops.
func relayConn(c net.Conn, up string) {
	defer c.Close()
	u, err := net.Dial("unix", up)
	if err != nil {
		return
	}
	defer u.Close()
	var buf []byte
	for {
		for _, hop := range [2][2]net.Conn{{c, u}, {u, c}} {
			body, err := protocol.ReadFrame(hop[0], buf)
			if err != nil {
				return
			}
			buf = body
			if err := protocol.WriteFrame(hop[1], body); err != nil {
				return
			}
		}
	}
}

// echoConn decodes and re-encodes each value rather than copying the bytes
// back, so the floor pays the same codec work as a real RPC server.
func echoConn(c net.Conn) {
	defer c.Close()
	var buf []byte
	for {
		body, err := protocol.ReadFrame(c, buf)
		if err != nil {
			return
		}
		buf = body
		var v int64
		if err := msgpack.Unmarshal(body, &v); err != nil {
			return
		}
		out, err := msgpack.Marshal(v)
		if err != nil {
			return
		}
		if err := protocol.WriteFrame(c, out); err != nil {
			return
		}
	}
}

func servePlugin() int {
	exitWithParent(pluginLifelineFD)
	// Serve exits the process itself on a handshake error and returns when
	// the parent's Kill asks it to quit.
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         pluginSet,
		Logger:          hclog.NewNullLogger(),
	})
	return 0
}

// childCommandPath is the executable to re-execute. A child refuses to
// spawn children of its own, so a misdetected role cannot recurse.
func childCommandPath() (string, error) {
	if os.Getenv(roleEnv) != "" {
		return "", errors.New("baseline: " + roleEnv + " is set; a baseline child does not start baselines")
	}
	return os.Executable()
}

// childEnv is the parent's environment with the role set explicitly. Stale
// copies of the role and the plugin cookie are dropped because go-plugin
// would otherwise let the parent's values win over ours.
func childEnv(role string) []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, roleEnv+"=") || strings.HasPrefix(kv, handshake.MagicCookieKey+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, roleEnv+"="+role)
}

// parentDeathSignal turns Pdeathsig on for children. Tests turn it off to
// show that the lifeline alone suffices.
var parentDeathSignal = true

// startOnLockedThread runs start, which forks a child, on an OS thread that
// lives until release is closed. Linux delivers Pdeathsig when the forking
// thread exits, not the process (golang/go#27505), and the Go runtime ends a
// thread when a goroutine exits while locked to it; pinning the fork to a
// thread of our own keeps an unrelated goroutine from killing the child.
func startOnLockedThread(start func() error, release <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after the
		// child is gone or the start failed.
		err := start()
		errc <- err
		if err == nil {
			<-release
		}
	}()
	return <-errc
}
