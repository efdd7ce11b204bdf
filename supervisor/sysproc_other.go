//go:build !linux

package supervisor

import "syscall"

func workerSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
