package supervisor

import "syscall"

// workerSysProcAttr makes the kernel kill a worker whose host dies, even by
// SIGKILL; the session's EOF covers the same case on other systems.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
