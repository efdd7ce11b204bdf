package density

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
)

// TestMain fails the run when a worker outlives the runtimes that started
// it.
func TestMain(m *testing.M) {
	serveHelper()
	code := m.Run()
	if err := interpreters.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "density: Shutdown: %v\n", err)
		code = 1
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(childPids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := childPids(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "density: child processes still present after every runtime was closed: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v (%T), want %#v (%T)", what, got, got, want, want)
	}
}

// hostState is what the host holds that interpreters add to.
type hostState struct {
	goroutines, fds int
	children        []int
}

func hostNow(t *testing.T) hostState {
	t.Helper()
	return hostState{goroutines: runtime.NumGoroutine(), fds: openFDs(t), children: childPids()}
}

// wantHostBack waits, for up to 10 s, until the host holds at most before's
// goroutines and descriptors plus their slack, and no child process
// before did not have; then it fails t for whatever is still over.
func wantHostBack(t *testing.T, before hostState, goroutineSlack, fdSlack int, after string) hostState {
	t.Helper()
	var now hostState
	var left []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		now, left = hostNow(t), nil
		for _, p := range now.children {
			if !slices.Contains(before.children, p) {
				left = append(left, p)
			}
		}
		if (now.goroutines <= before.goroutines+goroutineSlack && now.fds <= before.fds+fdSlack && len(left) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if now.goroutines > before.goroutines+goroutineSlack {
		buf := make([]byte, 4<<20)
		t.Errorf("%d goroutines %s, %d before: leaked\n%s", now.goroutines, after, before.goroutines, buf[:runtime.Stack(buf, true)])
	}
	if now.fds > before.fds+fdSlack {
		t.Errorf("%d open file descriptors %s, %d before: leaked", now.fds, after, before.fds)
	}
	if len(left) > 0 {
		t.Errorf("%d new child process(es) %s: %v", len(left), after, left)
	}
	return now
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries) - 1 // ReadDir's own
}

// childPids lists this process's children, zombies included.
func childPids() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == os.Getpid() {
			continue
		}
		if ppid, _, _, ok := procStat(p); ok && ppid == os.Getpid() {
			out = append(out, p)
		}
	}
	return out
}

// orphanedWorkers lists live workers reparented to init.
func orphanedWorkers() []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, comm, state, ok := procStat(p)
		if !ok || ppid != 1 || state == "Z" {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), protocol.WorkerArg) {
			out = append(out, fmt.Sprintf("%d (%s)", p, comm))
		}
	}
	return out
}

func procStat(pid int) (ppid int, comm, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", "", false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 2 {
		return 0, "", "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", "", false
	}
	return ppid, s[open+1 : closing], fields[0], true
}

func describePid(p int) string {
	ppid, comm, state, ok := procStat(p)
	if !ok {
		return fmt.Sprintf("%d (gone)", p)
	}
	return fmt.Sprintf("%d (%s) state %s parent %d", p, comm, state, ppid)
}

// privateBytes is a process's private memory: its pages no other process
// maps.
func privateBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	var kb int64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "Private_Clean:" || f[0] == "Private_Dirty:") {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/smaps_rollup: %q: %w", pid, line, err)
			}
			kb += n
		}
	}
	return kb << 10, nil
}
