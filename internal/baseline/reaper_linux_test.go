package baseline

import (
	"syscall"
	"testing"
)

// adoptOrphans makes this process the reaper of orphaned descendants for
// the rest of the test, so children of a killed helper parent are reaped
// here rather than left as zombies under an init that may not reap.
func adoptOrphans(t *testing.T) {
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Logf("cannot become a subreaper: %v", errno)
		return
	}
	t.Cleanup(func() { syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0) })
}
