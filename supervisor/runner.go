package supervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-plugin/runner"
)

// spawnThread runs every fork on one OS thread that lives as long as the
// process: Pdeathsig fires when the forking thread exits, not the process
// (golang/go#27505), so forking from an arbitrary thread could kill a
// worker when the Go runtime retires that thread.
var spawnThread = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is never reused or retired
		for f := range ch {
			f()
		}
	}()
	return ch
})

// workerRunner is go-plugin's runner for a worker. go-plugin launches it
// and reads its handshake; then the worker points its stdout at /dev/null,
// go-plugin's readers end, and the process is the supervisor's alone: an
// idle worker costs the host its two sockets, its stderr pipe and the
// goroutine that reads it, and no thread. That is why the runner forks
// itself rather than through os/exec: an exec.Cmd holds a pidfd for the
// process's whole life, and its Wait holds a thread.
type workerRunner struct {
	path string
	argv []string
	env  []string
	// files become the worker's descriptors 3, 4, …
	files []*os.File

	pid_   int
	stdout *os.File // the handshake's pipe, closed at its end
	stderr *tailBuffer
	// stderrDone is closed once the worker's stderr has reached its end:
	// what it wrote before it died is all in stderr.
	stderrDone chan struct{}

	reapOnce sync.Once
	mu       sync.Mutex // orders signals with the reap: no signal reaches a reaped pid
	reaped   bool
	status   exitStatus
	exited   chan struct{} // closed once the worker has been reaped
}

// exitStatus is how a reaped worker ended.
type exitStatus struct {
	code   int            // its exit code; -1 when a signal ended it
	signal syscall.Signal // the signal that ended it, or 0
}

var _ runner.Runner = (*workerRunner)(nil)

func newWorkerRunner(path string, args []string, env []string, files []*os.File, stderr *tailBuffer) *workerRunner {
	return &workerRunner{
		path: path, argv: append([]string{path}, args...), env: env, files: files,
		stderr: stderr, stderrDone: make(chan struct{}), exited: make(chan struct{}),
	}
}

// Start forks the worker on the spawn thread: stdin /dev/null (it reads
// nothing of the host's), stdout the handshake's pipe, stderr a pipe read
// into the crash-report tail.
func (r *workerRunner) Start(context.Context) error {
	path := r.path
	if !strings.Contains(path, "/") {
		lp, err := exec.LookPath(path)
		if err != nil {
			return err
		}
		path = lp
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		return err
	}
	defer errW.Close()
	fds := []uintptr{devnull.Fd(), outW.Fd(), errW.Fd()}
	for _, f := range r.files {
		fds = append(fds, f.Fd())
	}
	attr := &syscall.ProcAttr{Env: r.env, Files: fds, Sys: workerSysProcAttr()}
	done := make(chan error, 1)
	spawnThread() <- func() {
		pid, err := syscall.ForkExec(path, r.argv, attr)
		r.pid_ = pid
		done <- err
	}
	if err := <-done; err != nil {
		outR.Close()
		errR.Close()
		return &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	r.stdout = outR
	go r.readStderr(errR)
	return nil
}

// readStderr keeps what the worker writes to stderr until its end, a line
// at a time: a crash report's header and its first lines must reach the
// tail together, however the pipe splits them. The buffer is small: the
// goroutine holds it for the worker's life, and workers rarely write.
func (r *workerRunner) readStderr(f *os.File) {
	defer close(r.stderrDone)
	defer f.Close()
	var buf [512]byte
	var line []byte // a line not yet ended
	for {
		n, err := f.Read(buf[:])
		for p := buf[:n]; len(p) > 0; {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				line = append(line, p...)
				if len(line) >= maxStderrLine {
					_, _ = r.stderr.Write(line)
					line = line[:0]
				}
				break
			}
			if len(line) > 0 {
				line = append(line, p[:i+1]...)
				_, _ = r.stderr.Write(line)
				line = line[:0]
			} else {
				_, _ = r.stderr.Write(p[:i+1])
			}
			p = p[i+1:]
		}
		if err != nil {
			if len(line) > 0 {
				_, _ = r.stderr.Write(line)
			}
			return
		}
	}
}

// maxStderrLine is where a line without an end is passed on as it is.
const maxStderrLine = 4 << 10

// Wait is go-plugin's wait for the process, which it makes once the
// handshake's pipe has ended: the worker has answered or died. From then
// on the worker is the supervisor's, which reaps it (reap), so go-plugin's
// part ends here.
func (r *workerRunner) Wait(context.Context) error { return nil }

// Kill kills the worker unless it has been reaped.
func (r *workerRunner) Kill(context.Context) error {
	r.signal(syscall.SIGKILL)
	return nil
}

func (r *workerRunner) pid() int { return r.pid_ }

// signal sends sig unless the process has been reaped, so a recycled pid is
// never hit.
func (r *workerRunner) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.reaped && r.pid_ > 0 {
		_ = syscall.Kill(r.pid_, sig)
	}
}

// reap starts waiting for the worker to exit, once; exited is closed when
// it has been reaped. The wait holds no thread where the system can poll
// for a process's exit.
func (r *workerRunner) reap() {
	r.reapOnce.Do(func() { go r.awaitExit() })
}

// recordExit marks the worker reaped, with the status wait gave. The caller
// holds mu.
func (r *workerRunner) recordExit(ws syscall.WaitStatus) {
	r.reaped = true
	r.status = exitStatus{code: -1}
	switch {
	case ws.Signaled():
		r.status.signal = ws.Signal()
	case ws.Exited():
		r.status.code = ws.ExitStatus()
	}
	close(r.exited)
}

// wait4 is wait4(2) on the worker, retried when a signal interrupts it.
func (r *workerRunner) wait4() syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(r.pid_, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			return ws
		}
	}
}

// handshakeOutput is the pipe go-plugin reads the handshake from. It
// closes itself at its end, when the worker has pointed its stdout
// elsewhere, so an idle worker holds no descriptor of it in the host.
type handshakeOutput struct{ f *os.File }

func (h handshakeOutput) Read(p []byte) (int, error) {
	n, err := h.f.Read(p)
	if err != nil {
		h.f.Close()
	}
	return n, err
}

func (h handshakeOutput) Close() error { return h.f.Close() }

func (r *workerRunner) Stdout() io.ReadCloser { return handshakeOutput{r.stdout} }

// Stderr is empty for go-plugin: the runner reads the worker's stderr.
func (r *workerRunner) Stderr() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }

func (r *workerRunner) Diagnose(context.Context) string                  { return "" }
func (r *workerRunner) Name() string                                     { return r.path }
func (r *workerRunner) ID() string                                       { return strconv.Itoa(r.pid_) }
func (r *workerRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *workerRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
