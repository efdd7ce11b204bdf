package density

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

const (
	// thousandLanes bounds the operations in flight at once: enough to keep
	// two CPUs busy starting workers, few enough that no start waits out
	// its timeout behind the others.
	thousandLanes = 8
	// The goals for one idle interpreter: its worker's private memory, and
	// what the host holds for it.
	idlePrivateLimit    = 3 << 20
	idleHostGoroutines  = 2
	idleHostDescriptors = 3
	// idleCPULimit is the share of one core that a thousand idle
	// interpreters, workers and hosts together, may use.
	idleCPULimit = 0.02
	// idleWindow is how long idle CPU is measured.
	idleWindow = 10 * time.Second
	// Margins for what the host may hold once every interpreter is closed
	// beyond what it held before the first was created.
	thousandGoroutines = 10
	thousandFDs        = 5
	// Per worker, for checking the machine's limits before starting: the
	// most threads a worker starts (its runtime's, and one a cgo program
	// keeps besides), and an upper bound of the memory it costs the
	// system, page tables and kernel stacks included.
	workerThreadsBound = 6
	workerMemoryBound  = 2 << 20
)

// TestThousandInterpreters: 1,000 interpreters live at once in one host
// (SUBINTERP_THOUSAND=1, make thousand). See manyInterpreters.
func TestThousandInterpreters(t *testing.T) {
	if os.Getenv("SUBINTERP_THOUSAND") != "1" {
		t.Skip("SUBINTERP_THOUSAND=1 (make thousand) runs 1,000 interpreters at once")
	}
	manyInterpreters(t, 1000)
}

// TestTenThousandInterpreters: 10,000 interpreters live at once in one
// host (SUBINTERP_TENTHOUSAND=1, make tenthousand). See manyInterpreters.
func TestTenThousandInterpreters(t *testing.T) {
	if os.Getenv("SUBINTERP_TENTHOUSAND") != "1" {
		t.Skip("SUBINTERP_TENTHOUSAND=1 (make tenthousand) runs 10,000 interpreters at once")
	}
	manyInterpreters(t, 10000)
}

// manyInterpreters: n interpreters live at once in one host. Each answers
// a call from its own state, the runtime lists them all, and an idle one
// costs at most idlePrivateLimit of private memory, idleHostGoroutines
// goroutines and idleHostDescriptors descriptors in the host; idle, a
// thousand of them use less than idleCPULimit of a core. Closing them leaves
// the host as it was: no goroutine, file descriptor or process more. It
// logs what the host and the workers hold at full strength.
//
// Opt-in: it holds some 2 GiB per thousand interpreters while it runs, and
// a race-enabled build would need ten times that. It does not run in
// parallel: it counts this process's goroutines, file descriptors and
// children.
func manyInterpreters(t *testing.T, n int) {
	if raceEnabled {
		t.Skip("a race-enabled worker holds some 20 MiB, and thousands of them would not fit where thousands of real ones do: run without -race")
	}
	local := checkMachineLimits(t, n)

	rt := interpreters.New()
	rtClosed := false
	closeRT := func() {
		if !rtClosed {
			rtClosed = true
			if err := rt.Close(); err != nil {
				t.Errorf("Runtime.Close: %v", err)
			}
		}
	}
	t.Cleanup(closeRT)
	// What this host cannot hold, a second one does.
	var second *secondHost
	hostPid := os.Getpid()
	if local < n {
		second = startSecondHost(t)
		hostPid = second.cmd.Process.Pid
		t.Logf("this host holds %d interpreters, a second host (pid %d) the other %d: RLIMIT_NOFILE allows no more in one", local, hostPid, n-local)
	}
	parentOf := func(i int) int {
		if i < local {
			return os.Getpid()
		}
		return hostPid
	}

	// One interpreter first, so that what the runtime starts once is in
	// the baseline.
	first, err := rt.Create()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	got, err := first.Call("function(a, b) return a + b end", 2, 3)
	if err != nil {
		t.Fatalf("the first interpreter's call: %v", err)
	}
	wantEqual(t, "the first interpreter's call", got, int64(5))
	if err := first.Close(); err != nil {
		t.Fatalf("closing the first interpreter: %v", err)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	before, rss := proctest.HostNow(t), selfRSS(t)
	var secondBefore helperReply
	secondFDs := 0
	if second != nil {
		secondBefore, secondFDs = second.do(t, "list"), procFDs(hostPid)
	}
	available := memAvailable(t)
	t.Logf("before: host RSS %s, %d goroutines, %d file descriptors, %d child processes",
		mib(rss), before.Goroutines, before.FDs, len(before.Children))

	// Create them all, each with a global of its own.
	its := make([]*interpreters.Interpreter, n)
	began := time.Now()
	errs := inLanes(local, func(i int) error {
		it, err := rt.Create()
		if err != nil {
			return fmt.Errorf("Create: %w", err)
		}
		its[i] = it
		if err := it.Exec("k = " + strconv.Itoa(i)); err != nil {
			return fmt.Errorf("%v.Exec: %w", it, err)
		}
		return nil
	})
	if second != nil {
		second.do(t, fmt.Sprintf("create %d %d", local, n))
	}
	created := time.Since(began)
	if failed(t, "creating", errs) || t.Failed() {
		// The cleanup closes the runtime and TestMain checks that no
		// worker outlived it.
		t.FailNow()
	}
	t.Logf("created %d interpreters in %v (%v each, %d at a time)", n, created.Round(time.Millisecond),
		(created / time.Duration(n)).Round(time.Microsecond), thousandLanes)

	// Every one answers from its own state.
	began = time.Now()
	errs = inLanes(local, func(i int) error {
		got, err := its[i].Call("function(d) return k + d end", 1)
		if err != nil {
			return fmt.Errorf("%v.Call: %w", its[i], err)
		}
		if want := int64(i + 1); got != want {
			return fmt.Errorf("%v.Call = %#v (%T), want %d", its[i], got, got, want)
		}
		return nil
	})
	if second != nil {
		second.do(t, "call")
	}
	failed(t, "calling", errs)
	t.Logf("called all %d in %v", n, time.Since(began).Round(time.Millisecond))

	// The runtime lists exactly main and ours, each a worker of its own.
	all, err := rt.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	if len(all) != local+1 || all[0] != rt.GetMain() {
		t.Errorf("ListAll lists %d interpreters, want main and %d", len(all), local)
	}
	listed := make(map[*interpreters.Interpreter]bool, len(all))
	for _, it := range all {
		listed[it] = true
	}
	var secondList helperReply
	if second != nil {
		if secondList = second.do(t, "list"); secondList.Listed != n-local+1 || len(secondList.Pids) != n-local {
			t.Fatalf("the second host lists %d interpreters and %d workers, want main and %d", secondList.Listed, len(secondList.Pids), n-local)
		}
	}
	pids := make([]int, n)
	owner := make(map[int]int, n)
	for i := range pids {
		if i < local {
			it := its[i]
			if !listed[it] {
				t.Errorf("%v is not in ListAll", it)
			}
			if pids[i], err = it.Pid(); err != nil {
				t.Fatalf("%v.Pid: %v", it, err)
			}
		} else {
			pids[i] = secondList.Pids[i-local]
		}
		if other, dup := owner[pids[i]]; dup {
			t.Errorf("interpreters #%d and #%d share worker %d", other, i, pids[i])
		}
		owner[pids[i]] = i
		if ppid, _, state, ok := proctest.Stat(pids[i]); !ok || ppid != parentOf(i) || state == "Z" {
			t.Errorf("interpreter #%d: worker %d is not a live child of its host %d: %s", i, pids[i], parentOf(i), proctest.Describe(pids[i]))
		}
	}

	// What they use idle: CPU over a window in which nothing is asked of
	// them, the host's share included.
	hosts := []int{os.Getpid()}
	if hostPid != os.Getpid() {
		hosts = append(hosts, hostPid)
	}
	cpuBefore, hostCPUBefore := workersCPU(t, pids), workersCPU(t, hosts)
	time.Sleep(idleWindow)
	idleCPU := (workersCPU(t, pids) - cpuBefore + workersCPU(t, hosts) - hostCPUBefore).Seconds() / idleWindow.Seconds()

	// What they hold, idle, at full strength.
	var private, maxPrivate, pageTables int64
	var threads, maxThreads int
	for i, p := range pids {
		b, err := proctest.PrivateBytes(p)
		if err != nil {
			t.Fatalf("%v: private memory of worker %d: %v", its[i], p, err)
		}
		private += b
		maxPrivate = max(maxPrivate, b)
		pageTables += procKB(t, "/proc/"+strconv.Itoa(p)+"/status", "VmPTE:")
		th := procThreads(t, p)
		threads += th
		maxThreads = max(maxThreads, th)
	}
	perInterp := private / int64(n)
	hostRSS, hostG, hostFDs := selfRSS(t), runtime.NumGoroutine(), proctest.OpenFDs(t)
	used := available - memAvailable(t)
	goroutinesEach := float64(hostG-before.Goroutines) / float64(local)
	fdsEach := float64(hostFDs-before.FDs) / float64(local)
	if second != nil {
		t.Logf("second host: %d goroutines (+%.2f each), %d file descriptors (+%.2f each)",
			secondList.Goroutines, float64(secondList.Goroutines-secondBefore.Goroutines)/float64(n-local),
			procFDs(hostPid), float64(procFDs(hostPid)-secondFDs)/float64(n-local))
		goroutinesEach = max(goroutinesEach, float64(secondList.Goroutines-secondBefore.Goroutines)/float64(n-local))
		fdsEach = max(fdsEach, float64(procFDs(hostPid)-secondFDs)/float64(n-local))
	}
	t.Logf("%d live interpreters: workers' private memory %s in all, %s each on average (largest %s)",
		n, mib(private), mib(perInterp), mib(maxPrivate))
	t.Logf("workers' page tables %s in all (%.0f KiB each), %d threads in all (%.2f each, at most %d)",
		mib(pageTables), float64(pageTables)/float64(n)/1024, threads, float64(threads)/float64(n), maxThreads)
	t.Logf("host: RSS %s (+%s, %.0f KiB each), %d goroutines (+%.2f each), %d file descriptors (+%.2f each)",
		mib(hostRSS), mib(hostRSS-rss), float64(hostRSS-rss)/float64(n)/1024, hostG, goroutinesEach, hostFDs, fdsEach)
	t.Logf("idle: %.2f%% of one core over %v, workers and host together", idleCPU*100, idleWindow)
	// System-wide: anything else running moves it, and so does memory the
	// kernel is still taking back from the workers of an earlier run.
	t.Logf("system: MemAvailable fell by %s (%s per interpreter, kernel memory included)",
		mib(used), mib(used/int64(n)))
	if perInterp > idlePrivateLimit {
		t.Errorf("an idle interpreter holds %s of private memory on average, more than %s", mib(perInterp), mib(idlePrivateLimit))
	}
	if goroutinesEach > idleHostGoroutines {
		t.Errorf("an idle interpreter costs the host %.2f goroutines, more than %d", goroutinesEach, idleHostGoroutines)
	}
	if fdsEach > idleHostDescriptors {
		t.Errorf("an idle interpreter costs the host %.2f file descriptors, more than %d", fdsEach, idleHostDescriptors)
	}
	if limit := idleCPULimit * float64(n) / 1000; idleCPU > limit {
		t.Errorf("%d idle interpreters use %.2f%% of a core, more than %.0f%%", n, idleCPU*100, limit*100)
	}

	// Close them all; each Close returns once its worker is reaped.
	began = time.Now()
	errs = inLanes(local, func(i int) error { return its[i].Close() })
	if second != nil {
		if r := second.do(t, "close"); len(r.Children) > 0 {
			t.Errorf("children of the second host after closing its interpreters: %v", r.Children)
		}
	}
	closed := time.Since(began)
	failed(t, "closing", errs)
	t.Logf("closed %d interpreters in %v (%v each, %d at a time)", n, closed.Round(time.Millisecond),
		(closed / time.Duration(n)).Round(time.Microsecond), thousandLanes)
	if left, err := rt.ListAll(); err != nil || len(left) != 1 || left[0] != rt.GetMain() {
		t.Errorf("ListAll after closing every interpreter = %v, %v; want main alone", left, err)
	}

	// The host is back where it started, with the runtime still up.
	after := proctest.WantHostBack(t, before, thousandGoroutines, thousandFDs, fmt.Sprintf("after closing %d interpreters", n))
	t.Logf("after: host RSS %s, %d goroutines, %d file descriptors, %d child processes", mib(selfRSS(t)), after.Goroutines, after.FDs, len(after.Children))
	closeRT()
	if second != nil {
		if r := second.quit(t); len(r.Children) > 0 {
			t.Errorf("children of the second host after closing its runtime: %v", r.Children)
		}
	}
	if left := proctest.Children(); len(left) > 0 {
		t.Errorf("children of this process after Runtime.Close: %v", left)
	}
	if orphans := orphanedWorkers(); len(orphans) > 0 {
		t.Errorf("workers orphaned to init:\n\t%s", strings.Join(orphans, "\n\t"))
	}
}

// checkMachineLimits fails t before anything starts when the machine
// cannot hold n workers: too few process ids, threads or memory. Running
// out midway would fail Create as it should, but this test means to
// measure n. It returns how many of them this host can hold: as many as
// RLIMIT_NOFILE allows, which it raises as far as it may; the test holds
// the rest in a second host.
func checkMachineLimits(t *testing.T, n int) (local int) {
	t.Helper()
	needFDs := uint64(n*idleHostDescriptors + 1024)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("RLIMIT_NOFILE: %v", err)
	}
	if lim.Cur < needFDs {
		raised := unix.Rlimit{Cur: needFDs, Max: max(lim.Max, needFDs)}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
			raised = unix.Rlimit{Cur: lim.Max, Max: lim.Max}
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
				t.Fatalf("raising RLIMIT_NOFILE to its hard limit %d: %v", lim.Max, err)
			}
		}
		t.Logf("RLIMIT_NOFILE raised from %d (hard %d) to %d", lim.Cur, lim.Max, raised.Cur)
		lim = raised
	}
	local = min(n, int(lim.Cur-1024)/idleHostDescriptors)
	if 2*local < n {
		t.Fatalf("%d interpreters need %d file descriptors, more than two hosts with RLIMIT_NOFILE %d have", n, needFDs, lim.Cur)
	}
	needTasks := int64(n*workerThreadsBound + 4096)
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if have, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && have < needTasks {
			t.Fatalf("%d interpreters may need %d threads, and %s is %d: raise it (sysctl -w kernel.%s=%d)",
				n, needTasks, f, have, f[strings.LastIndex(f, "/")+1:], needTasks)
		}
	}
	if have, need := memAvailable(t), int64(n)*workerMemoryBound; have < need {
		t.Fatalf("%d interpreters need some %s of memory, and %s is available", n, mib(need), mib(have))
	}
	return local
}

// procFDs is the number of descriptors process p has open.
func procFDs(p int) int {
	entries, _ := os.ReadDir("/proc/" + strconv.Itoa(p) + "/fd")
	return len(entries)
}

// workersCPU is the CPU time the processes pids have used.
func workersCPU(t *testing.T, pids []int) time.Duration {
	t.Helper()
	var total time.Duration
	for _, p := range pids {
		total += procCPU(t, "/proc/"+strconv.Itoa(p)+"/stat")
	}
	return total
}

// selfCPU is the CPU time this process has used.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	return procCPU(t, "/proc/self/stat")
}

// procCPU is utime + stime of a /proc/PID/stat file.
func procCPU(t *testing.T, path string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime the 12th and stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("%s: %q", path, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, b, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux the kernel ABI has shipped.
const clockTicks = 100

// inLanes runs f(0) … f(n-1), thousandLanes at a time, and returns their
// errors by index.
func inLanes(n int, f func(i int) error) []error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range thousandLanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// failed reports the errors of one phase, the first few in full, and
// whether there were any.
func failed(t *testing.T, phase string, errs []error) bool {
	t.Helper()
	const shown = 5
	count := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		if count < shown {
			t.Errorf("%s #%d: %v", phase, i, err)
		}
		count++
	}
	if count > shown {
		t.Errorf("%s: %d failures in all, %d of %d shown", phase, count, shown, count)
	}
	return count > 0
}

// selfRSS is this process's resident set size.
func selfRSS(t *testing.T) int64 {
	t.Helper()
	return procKB(t, "/proc/self/status", "VmRSS:")
}

// procThreads is the number of threads of process p.
func procThreads(t *testing.T, p int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
	if err != nil {
		t.Fatalf("threads of %d: %v", p, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("threads of %d: %q: %v", p, line, err)
			}
			return n
		}
	}
	t.Fatalf("no Threads line in /proc/%d/status", p)
	return 0
}

// memAvailable is the system's estimate of the memory it can still give
// out without swapping.
func memAvailable(t *testing.T) int64 {
	t.Helper()
	return procKB(t, "/proc/meminfo", "MemAvailable:")
}

// procKB reads a "Key: N kB" line of a /proc file, in bytes.
func procKB(t *testing.T, path, key string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no %s: %v", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, sc.Text(), err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s line in %s", key, path)
	return 0
}

// mib formats a byte count in MiB, or GiB from one up.
func mib(b int64) string {
	if b >= 1<<30 || b <= -1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20))
}
