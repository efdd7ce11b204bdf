package proctest

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// OpenFDs counts this process's open file descriptors, leaving out the one
// reading /proc/self/fd holds while it counts. It skips t where there is no
// /proc/self/fd.
func OpenFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries) - 1
}

// Host is what a host holds that interpreters coming and going must give
// back: goroutines, open file descriptors, child processes.
type Host struct {
	Goroutines, FDs int
	Children        map[int]bool
}

// HostNow is this process's Host state.
func HostNow(t testing.TB) Host {
	t.Helper()
	h := Host{Goroutines: runtime.NumGoroutine(), FDs: OpenFDs(t), Children: make(map[int]bool)}
	for _, p := range Children() {
		h.Children[p] = true
	}
	return h
}

// WantHostBack waits, for up to 10 s, until the host holds at most before's
// goroutines and file descriptors plus their slack, and no child process
// before did not have; then it fails t for whatever is still over, saying
// after what. It returns the state it ended with.
func WantHostBack(t testing.TB, before Host, goroutineSlack, fdSlack int, after string) Host {
	t.Helper()
	var now Host
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		now, left = HostNow(t), nil
		for p := range now.Children {
			if !before.Children[p] {
				left = append(left, Describe(p))
			}
		}
		if (now.Goroutines <= before.Goroutines+goroutineSlack && now.FDs <= before.FDs+fdSlack && len(left) == 0) || time.Now().After(deadline) {
			break
		}
		// Workers exit and goroutines end on their own schedule; poll.
		time.Sleep(50 * time.Millisecond)
	}
	if now.Goroutines > before.Goroutines+goroutineSlack {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%d goroutines %s, %d before: leaked\n%s", now.Goroutines, after, before.Goroutines, buf)
	}
	if now.FDs > before.FDs+fdSlack {
		t.Errorf("%d open file descriptors %s, %d before: leaked", now.FDs, after, before.FDs)
	}
	if len(left) > 0 {
		t.Errorf("%d new child process(es) %s:\n\t%s", len(left), after, strings.Join(left, "\n\t"))
	}
	return now
}
