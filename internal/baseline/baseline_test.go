//go:build unix

package baseline

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var echoValues = []int64{0, 1, -1, 42, 1 << 40, math.MaxInt64, math.MinInt64}

func TestRaw(t *testing.T) {
	r, err := StartRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid := r.cmd.Process.Pid

	for _, v := range echoValues {
		if got, err := r.Echo(v); err != nil || got != v {
			t.Fatalf("Echo(%d) = %d, %v", v, got, err)
		}
	}
	c, err := r.Conn()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range echoValues {
		if got, err := c.Echo(v); err != nil || got != v {
			t.Fatalf("RawConn.Echo(%d) = %d, %v", v, got, err)
		}
	}

	// Concurrent callers, half through the pool and half on their own
	// connections; a mixed-up reply would show as a wrong value.
	callConcurrently(t, 8, 200, func(g int) (func(int64) (int64, error), func()) {
		if g%2 == 0 {
			return r.Echo, func() {}
		}
		gc, err := r.Conn()
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		return gc.Echo, func() { gc.Close() }
	})

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	assertReaped(t, pid)
	if _, err := c.Echo(1); err == nil {
		t.Error("RawConn.Echo succeeded after the child was killed")
	}
	c.Close()
	if _, err := r.Echo(1); !errors.Is(err, errRawClosed) {
		t.Errorf("Echo after Close: %v, want errRawClosed", err)
	}
	if _, err := r.Conn(); err == nil {
		t.Error("Conn succeeded after Close")
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(r.dir); !os.IsNotExist(err) {
		t.Errorf("socket directory left behind: %v", err)
	}
	assertNoChildren(t)
}

// A relay child answers as the echo child behind it does, for concurrent
// callers each on a connection of its own, and a dead echo child fails
// calls through the relay rather than hanging them.
func TestRawRelay(t *testing.T) {
	up, err := StartRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	r, err := StartRawRelay(up)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, v := range echoValues {
		if got, err := r.Echo(v); err != nil || got != v {
			t.Fatalf("Echo(%d) through the relay = %d, %v", v, got, err)
		}
	}
	callConcurrently(t, 8, 200, func(int) (func(int64) (int64, error), func()) {
		c, err := r.Conn()
		if err != nil {
			t.Error(err)
			return nil, nil
		}
		return c.Echo, func() { c.Close() }
	})
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Echo(1); err == nil {
		t.Error("Echo through the relay succeeded after its echo child was killed")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoChildren(t)
}

// A Raw child that dies on its own must make calls fail, not hang.
func TestRawChildDeath(t *testing.T) {
	r, err := StartRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-r.exited
	if _, err := r.Echo(1); err == nil {
		t.Error("Echo succeeded on a pooled connection to a dead child")
	}
	if _, err := r.Echo(1); err == nil {
		t.Error("Echo succeeded on a new connection to a dead child")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoChildren(t)
}

func TestPlugin(t *testing.T) {
	p, err := StartPlugin()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pid := p.cmd.Process.Pid

	for _, v := range echoValues {
		if got, err := p.Echo(v); err != nil || got != v {
			t.Fatalf("Echo(%d) = %d, %v", v, got, err)
		}
	}
	callConcurrently(t, 8, 200, func(int) (func(int64) (int64, error), func()) {
		return p.Echo, func() {}
	})

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	assertReaped(t, pid)
	if _, err := p.Echo(1); err == nil {
		t.Error("Echo succeeded after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Errorf("socket directory left behind: %v", err)
	}
	assertNoChildren(t)
}

func TestLaunchPlugin(t *testing.T) {
	for range 3 {
		if err := LaunchPlugin(); err != nil {
			t.Fatal(err)
		}
		assertNoChildren(t)
	}
}

func TestInProcessLua(t *testing.T) {
	l := NewInProcessLua()
	for _, v := range []int64{0, 1, -1, 42, 1 << 53, -(1 << 53)} {
		if got, err := l.Call(v); err != nil || got != v {
			t.Fatalf("Call(%d) = %d, %v", v, got, err)
		}
	}
	if top := l.l.GetTop(); top != 0 {
		t.Errorf("Call left %d values on the Lua stack", top)
	}
	l.Close()
	if _, err := l.Call(1); err == nil {
		t.Error("Call succeeded after Close")
	}
	l.Close()
}

// A child started as a baseline must refuse to start baselines itself.
func TestChildDoesNotSpawn(t *testing.T) {
	t.Setenv(roleEnv, rawRole)
	if _, err := StartRaw(); err == nil {
		t.Fatal("StartRaw succeeded with the child role set")
	}
	if _, err := StartPlugin(); err == nil {
		t.Fatal("StartPlugin succeeded with the child role set")
	}
}

// The argv marker alone, or the variable alone, must not select a role.
func TestChildRoleNeedsBothMarkers(t *testing.T) {
	args := os.Args
	defer func() { os.Args = args }()

	os.Args = []string{"x", rawRole}
	if r := childRole(); r != "" {
		t.Errorf("argv alone selected %q", r)
	}
	t.Setenv(roleEnv, pluginRole)
	if r := childRole(); r != "" {
		t.Errorf("mismatched argv and env selected %q", r)
	}
	os.Args = []string{"x", "-test.v"}
	if r := childRole(); r != "" {
		t.Errorf("env alone selected %q", r)
	}
	t.Setenv(roleEnv, rawRole)
	os.Args = []string{"x", rawRole}
	if r := childRole(); r != rawRole {
		t.Errorf("both markers selected %q, want %q", r, rawRole)
	}
}

const helperParentEnv = "SUBINTERP_BASELINE_TEST_PARENT"

// TestHelperParent is not a test on its own: TestChildrenDieWithParent runs
// the test binary with only this test selected, to get a parent that starts
// both children and is then killed.
func TestHelperParent(t *testing.T) {
	mode := os.Getenv(helperParentEnv)
	if mode == "" {
		t.Skip("runs only as TestChildrenDieWithParent's helper process")
	}
	if mode == "lifeline" {
		parentDeathSignal = false
	}
	r, err := StartRaw()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	p, err := StartPlugin()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	fmt.Printf("PIDS %d %d\n", r.cmd.Process.Pid, p.cmd.Process.Pid)
	time.Sleep(time.Minute) // killed long before; bounded in case it is not
	os.Exit(3)
}

// Children must not outlive a parent that never called Close, neither with
// Pdeathsig nor, where it is missing, with the lifeline pipe alone.
func TestChildrenDieWithParent(t *testing.T) {
	modes := []string{"lifeline"}
	if runtime.GOOS == "linux" {
		modes = append(modes, "pdeathsig")
	}
	adoptOrphans(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			// Sockets of the killed parent's children are left behind;
			// keep them out of the real TMPDIR.
			tmp, err := os.MkdirTemp("", "sibt-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(tmp) })
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestHelperParent$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperParentEnv+"="+mode, "TMPDIR="+tmp)
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if f, ok := strings.CutPrefix(sc.Text(), "PIDS "); ok {
					for _, s := range strings.Fields(f) {
						pid, err := strconv.Atoi(s)
						if err != nil {
							t.Fatal(err)
						}
						pids = append(pids, pid)
					}
					break
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if len(pids) != 2 {
				t.Fatalf("helper reported pids %v", pids)
			}
			for _, pid := range pids {
				waitGone(t, pid, 5*time.Second)
			}
			assertNoChildren(t)
		})
	}
}

// callConcurrently runs callers goroutines of n calls each. newCaller
// returns the call and its cleanup; every reply must be the value sent.
func callConcurrently(t *testing.T, callers, n int, newCaller func(g int) (func(int64) (int64, error), func())) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range callers {
		call, done := newCaller(g)
		if call == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done()
			for i := range n {
				v := int64(g)<<32 | int64(i)
				if got, err := call(v); err != nil || got != v {
					t.Errorf("caller %d: echo(%d) = %d, %v", g, v, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// assertReaped checks that pid no longer exists: not even as a zombie,
// because Close must have waited for it.
func assertReaped(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("child %d still exists after Close (kill 0: %v)", pid, err)
	}
}

// waitGone waits for pid to die, reaping it if it was adopted by this
// process. Otherwise it is a zombie until its new parent reaps it, which
// counts as dead.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if got == pid {
			return
		}
		if errors.Is(err, syscall.ECHILD) {
			// Not adopted: someone else reaps it.
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || procState(pid) == "Z" {
				return
			}
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("child %d outlived its parent by %v", pid, d)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procState is the state letter of pid from /proc, or "" where there is no
// /proc.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name may contain spaces and parentheses; the state
	// follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// assertNoChildren checks, where /proc exists, that this process has no
// children left, running or unreaped.
func assertNoChildren(t *testing.T) {
	t.Helper()
	if kids := children(); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

func children() []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := os.Getpid()
	var kids []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == self {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			kids = append(kids, pid)
		}
	}
	return kids
}

// Benchmarks. Echo benchmarks also report the median and 99th percentile
// latency, since a mean hides the tail that process round trips have.

func BenchmarkRawEcho(b *testing.B) {
	r, err := StartRaw()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	c, err := r.Conn()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	benchLatency(b, c.Echo)
}

func BenchmarkPluginEcho(b *testing.B) {
	p, err := StartPlugin()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	benchLatency(b, p.Echo)
}

func BenchmarkInProcessLua(b *testing.B) {
	l := NewInProcessLua()
	defer l.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := l.Call(int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPluginLaunch(b *testing.B) {
	benchLatency(b, func(int64) (int64, error) { return 0, LaunchPlugin() })
}

// BenchmarkRawLaunch is the floor for launch times: exec, connect and one
// echo, without go-plugin.
func BenchmarkRawLaunch(b *testing.B) {
	benchLatency(b, func(int64) (int64, error) {
		r, err := StartRaw()
		if err != nil {
			return 0, err
		}
		return 0, r.Close()
	})
}

// BenchmarkRawEcho8 runs 8 callers, each on its own connection.
func BenchmarkRawEcho8(b *testing.B) {
	r, err := StartRaw()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	benchConcurrent(b, 8, func() (func(int64) (int64, error), func(), error) {
		c, err := r.Conn()
		if err != nil {
			return nil, nil, err
		}
		return c.Echo, func() { c.Close() }, nil
	})
}

// BenchmarkPluginEcho8 runs 8 callers sharing the plugin's connection, as
// go-plugin users do.
func BenchmarkPluginEcho8(b *testing.B) {
	p, err := StartPlugin()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	benchConcurrent(b, 8, func() (func(int64) (int64, error), func(), error) {
		return p.Echo, func() {}, nil
	})
}

func benchLatency(b *testing.B, call func(int64) (int64, error)) {
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		v := int64(i)
		start := time.Now()
		_, err := call(v)
		lat[i] = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// benchConcurrent splits b.N calls among callers goroutines and reports
// the aggregate rate.
func benchConcurrent(b *testing.B, callers int, newCaller func() (func(int64) (int64, error), func(), error)) {
	calls := make([]func(int64) (int64, error), callers)
	for g := range calls {
		call, done, err := newCaller()
		if err != nil {
			b.Fatal(err)
		}
		defer done()
		calls[g] = call
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if got, err := call(i); err != nil || got != i {
					b.Errorf("echo(%d) = %d, %v", i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
