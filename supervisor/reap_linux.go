package supervisor

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// awaitExit waits for the worker's exit without reaping it, then reaps it
// under mu, so that signal never reaches a recycled pid. The wait is on a
// pidfd the runtime's poller watches: thousands of workers exiting at once
// hold no thread each. Where no pidfd can be had, waitid waits.
func (r *workerRunner) awaitExit() {
	if !r.pollExit() {
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, r.pid_, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recordExit(r.wait4())
}

// pollExit waits on a pidfd until the worker has exited; false when it
// could not.
func (r *workerRunner) pollExit() bool {
	fd, err := unix.PidfdOpen(r.pid_, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		exited = err == nil && info.Signo != 0
		return err != nil || exited
	})
	return err == nil && exited
}
