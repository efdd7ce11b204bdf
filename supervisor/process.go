package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/subinterp/subinterp/protocol"
	_ "github.com/subinterp/subinterp/worker" // links the worker into every binary that can spawn one
)

// process is one running worker: launched and handshaken through
// go-plugin, then driven over its msgpack session and call channel.
type process struct {
	runner *workerRunner
	peer   *protocol.Peer
	// calls is exclusive to the interpreter's running call. Its socket
	// stays blocking: the goroutine waiting for a call sleeps in read(2) and
	// the kernel wakes its thread, where the poller would wake a thread of
	// its own and hand over, and would wake too whenever the worker drains
	// the socket. A call in flight so holds a host thread; idle interpreters
	// hold none.
	calls  *protocol.CallConn
	callID uint32           // the last call's id; guarded like calls
	yield  protocol.Yielder // for the goroutine making the call; guarded like calls
	stderr *tailBuffer

	// handlers are the callbacks of the interpreter the worker serves; a
	// spare has none until it is claimed.
	handlers atomic.Pointer[map[string]protocol.Handler]
	// hostPrompt says the interpreter's host functions end soon after
	// their context does (Hosting.Prompt).
	hostPrompt atomic.Bool

	stopOnce sync.Once
	dead     chan struct{}   // closed by markDead once the watcher knows how the worker ended
	exitErr  *protocol.Error // how it ended, when it crashed; nil when it was stopped
	// life ends with the worker: a request of its that is still being
	// served (a blocked queue get) has no one left to answer.
	life    context.Context
	endLife context.CancelFunc

	endMu sync.Mutex
	ended bool   // the session has ended
	onEnd func() // what its end sets off; see whenEnded
}

// whenEnded runs f once the worker's session has ended, on the goroutine
// that read the session: an idle worker costs the host no goroutine
// waiting for its end.
func (p *process) whenEnded(f func()) {
	p.endMu.Lock()
	if p.ended {
		p.endMu.Unlock()
		go f()
		return
	}
	p.onEnd = f
	p.endMu.Unlock()
}

// sessionEnded is the session's OnClose.
func (p *process) sessionEnded() {
	p.endMu.Lock()
	p.ended = true
	f := p.onEnd
	p.onEnd = nil
	p.endMu.Unlock()
	p.runner.reap()
	if f != nil {
		f()
	}
}

// markDead records how the worker ended and wakes calls waiting to know.
func (p *process) markDead(exitErr *protocol.Error) {
	p.exitErr = exitErr
	p.endLife()
	_ = p.calls.Close() // a call still reading it has had its end already
	close(p.dead)
}

// deathCause waits for the watcher's verdict on a worker whose session
// ended: its exit error when it crashed, nil when it was stopped.
func (p *process) deathCause() *protocol.Error {
	<-p.dead
	return p.exitErr
}

// bind makes p the worker of it: its requests are served as its.
func (s *Supervisor) bind(p *process, it *interp) {
	h := s.callbacks(it.id)
	s.hostCallbacks(it, h)
	if it.hosting.Confined {
		s.confine(it, h)
	}
	p.hostPrompt.Store(it.hosting.Prompt)
	p.handlers.Store(&h)
}

// startProcess spawns a worker and returns once it has handshaken. Bind
// it to an interpreter before it runs anything.
func (s *Supervisor) startProcess(wcfg protocol.WorkerConfig) (*process, error) {
	cfg := s.cfg
	hostEnd, workerEnd, err := socketPair("subinterp-session")
	if err != nil {
		return nil, err
	}
	defer hostEnd.Close()
	defer workerEnd.Close() // the worker has its copy; keeping ours would hide its death
	hostCalls, workerCalls, err := socketPair("subinterp-calls")
	if err != nil {
		return nil, err
	}
	defer workerCalls.Close()
	started := false
	defer func() {
		if !started {
			hostCalls.Close()
		}
	}()

	wcfgJSON, err := json.Marshal(wcfg)
	if err != nil {
		return nil, err
	}
	env := workerEnv(wcfgJSON)

	p := &process{stderr: newTailBuffer(), dead: make(chan struct{})}
	p.life, p.endLife = context.WithCancel(context.Background())
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          plugins,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
		// go-plugin's own logs are noise here; what a worker says on
		// stderr is kept for crash reports.
		Logger:       hclog.NewNullLogger(),
		SkipHostEnv:  true,
		StartTimeout: cfg.StartTimeout,
		// go-plugin hands over a template command carrying its handshake
		// environment, and a directory for a listener the worker does not
		// open.
		RunnerFunc: func(_ hclog.Logger, template *exec.Cmd, socketDir string) (runner.Runner, error) {
			_ = os.Remove(socketDir)
			p.runner = newWorkerRunner(cfg.Executable, []string{protocol.WorkerArg}, append(env, template.Env...),
				[]*os.File{workerEnd, workerCalls}, p.stderr) // fds 3 and 4: WorkerConnFD, WorkerCallFD
			return p.runner, nil
		},
	})
	if _, err := client.Start(); err != nil {
		// go-plugin has killed a worker it started; what it said on stderr
		// before it died explains why.
		if p.runner != nil && p.runner.pid() > 0 {
			p.runner.signal(syscall.SIGKILL)
			p.runner.reap()
			<-p.runner.exited
			p.waitStderr()
		}
		if tail := p.stderr.Tail(); tail != "" {
			return nil, fmt.Errorf("start worker: %w; its stderr ends:\n%s", err, tail)
		}
		return nil, fmt.Errorf("start worker: %w", err)
	}
	conn, err := net.FileConn(hostEnd)
	if err != nil {
		p.runner.signal(syscall.SIGKILL)
		p.runner.reap()
		return nil, fmt.Errorf("worker session: %w", err)
	}
	p.calls = protocol.NewCallConn(hostCalls)
	p.peer = protocol.NewPeer(conn, protocol.PeerConfig{OnClose: p.sessionEnded})
	started = true
	return p, nil
}

// workerEnv is a worker's environment: none of the host's but TMPDIR, and
// the settings of a worker that may be one of thousands side by side.
func workerEnv(wcfgJSON []byte) []string {
	env := []string{protocol.WorkerConfigEnv + "=" + string(wcfgJSON)}
	if tmp := os.Getenv("TMPDIR"); tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	return append(env,
		// A race-enabled build (a `go test -race` binary is its own
		// worker) otherwise sleeps a second at every exit, which every
		// Close would wait.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
		// One P from the start: the VM runs one call at a time, and every
		// P more makes the runtime start threads that then idle for the
		// worker's whole life. A running call still has its cancellation
		// served, the runtime preempting it; an interpreter with limits
		// takes a second P for their watch (see the worker's
		// applyProcessLimits).
		"GOMAXPROCS=1",
	)
}

// socketPair makes a connected pair of unix sockets, close-on-exec before
// any other goroutine can fork: only the worker gets its end, through
// ExtraFiles.
func socketPair(name string) (host, worker *os.File, err error) {
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}

// callDeadlineKey is the context key of the deadline of the call a request
// was made in. Requests are served a little past it (requestGrace), but a
// queue operation must not take or leave an item once the call is over: the
// worker's VM stops at its next instruction, and the item would be lost,
// or put for a call its caller saw fail.
type callDeadlineKey struct{}

// untilCallDeadline is ctx ending at the deadline of the call it serves,
// when that call has one.
func untilCallDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Value(callDeadlineKey{}).(time.Time); ok {
		return context.WithDeadline(ctx, dl)
	}
	return ctx, func() {}
}

// respondKey is the context key of the function that answers the request
// being served: func(result any) bool, false when the answer could not be
// written.
type respondKey struct{}

// pid is the worker's process id.
func (p *process) pid() int { return p.runner.pid() }

// exited is closed once the worker has been reaped.
func (p *process) exited() <-chan struct{} { return p.runner.exited }

// waitStderr waits, a bounded time, for the end of a dead worker's
// stderr: a program it started may hold it open.
func (p *process) waitStderr() {
	select {
	case <-p.runner.stderrDone:
	case <-time.After(exitWait):
	}
}

// stop ends the worker: closing the session makes it exit on its own; one
// that does not within exitWait is killed. It returns after the process has
// been reaped.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		_ = p.peer.Close()
		_ = p.calls.Close() // ends a call's read in progress at once
		p.runner.reap()
		select {
		case <-p.exited():
		case <-time.After(exitWait):
			p.runner.signal(syscall.SIGKILL)
			<-p.exited()
		}
	})
}

// exitError describes how the worker ended. It waits for the reap, which
// follows the session's end by a few milliseconds, and for the end of its
// stderr, which the crash report quotes.
func (p *process) exitError(id int64) *protocol.Error {
	p.runner.reap()
	select {
	case <-p.exited():
	case <-time.After(exitWait):
		p.runner.signal(syscall.SIGKILL)
		<-p.exited()
	}
	p.waitStderr()
	e := &protocol.Error{Code: protocol.CodeWorkerExit, InterpreterID: id, ExitCode: p.runner.status.code}
	if sig := p.runner.status.signal; sig != 0 {
		e.Signal = sig.String()
	}
	e.StderrTail = p.stderr.Tail()
	if e.Signal != "" {
		e.Msg = fmt.Sprintf("interpreter %d: worker process %d was %s", id, p.pid(), e.Signal)
	} else {
		e.Msg = fmt.Sprintf("interpreter %d: worker process %d exited with code %d", id, p.pid(), e.ExitCode)
	}
	return e
}
