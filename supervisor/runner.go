package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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

// workerRunner is go-plugin's runner for a worker: exec.Cmd started on the
// spawn thread, with the exit status kept for crash reports.
type workerRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser

	exited chan struct{} // closed when Wait has returned
	state  *os.ProcessState
	once   sync.Once
}

var _ runner.Runner = (*workerRunner)(nil)

func newWorkerRunner(cmd *exec.Cmd) (*workerRunner, error) {
	cmd.Stdin = nil // go-plugin hands the host's stdin on; a worker reads nothing
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &workerRunner{cmd: cmd, stdout: stdout, stderr: stderr, exited: make(chan struct{})}, nil
}

func (r *workerRunner) Start(context.Context) error {
	done := make(chan error, 1)
	spawnThread() <- func() { done <- r.cmd.Start() }
	return <-done
}

func (r *workerRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.once.Do(func() {
		r.state = r.cmd.ProcessState
		close(r.exited)
	})
	return err
}

func (r *workerRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *workerRunner) pid() int {
	if r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// signal sends sig unless the process has been reaped, so a recycled pid is
// never hit.
func (r *workerRunner) signal(sig syscall.Signal) {
	select {
	case <-r.exited:
	default:
		_ = r.cmd.Process.Signal(sig)
	}
}

func (r *workerRunner) Diagnose(context.Context) string                  { return "" }
func (r *workerRunner) Stdout() io.ReadCloser                            { return r.stdout }
func (r *workerRunner) Stderr() io.ReadCloser                            { return r.stderr }
func (r *workerRunner) Name() string                                     { return r.cmd.Path }
func (r *workerRunner) ID() string                                       { return strconv.Itoa(r.pid()) }
func (r *workerRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *workerRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }
