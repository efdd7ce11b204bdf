package integration

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

	"github.com/subinterp/subinterp/interpreters"
)

const (
	thousandInterpreters = 1000
	// thousandLanes bounds the operations in flight at once: enough to keep
	// two CPUs busy starting workers, few enough that no start waits out
	// its timeout behind the others.
	thousandLanes = 8
	// thousandPrivateLimit is the goal for one idle interpreter's private
	// memory.
	thousandPrivateLimit = 3 << 20
	// Margins for what the host may hold once every interpreter is closed
	// beyond what it held before the first was created.
	thousandGoroutines = 10
	thousandFDs        = 5
)

// TestThousandInterpreters: 1,000 interpreters live at once in one host.
// Each answers a call from its own state, the runtime lists them all, an
// idle one costs at most 3 MiB of private memory, and closing them leaves
// the host as it was: no goroutine, file descriptor or process more. It
// logs what the host and the workers hold at full strength.
//
// Opt-in (SUBINTERP_THOUSAND=1, make thousand): it holds about 3 GiB while
// it runs, and a race-enabled build would need some 20 GiB. It does
// not run in parallel: it counts this process's goroutines, file
// descriptors and children.
func TestThousandInterpreters(t *testing.T) {
	if os.Getenv("SUBINTERP_THOUSAND") != "1" {
		t.Skip("SUBINTERP_THOUSAND=1 (make thousand) runs 1,000 interpreters at once")
	}
	if raceEnabled {
		t.Skip("a race-enabled worker holds some 20 MiB, and 1,000 of them would not fit where 1,000 real ones do: run without -race")
	}
	n := thousandInterpreters

	// Earlier tests' runtimes close in the background; let them finish so
	// that the counts below are this test's.
	backgroundCloses.Wait()
	rt := interpreters.New()
	closeRT := closeAtCleanup(t, rt)

	// One interpreter first, so that what the runtime starts once is in
	// the baseline.
	first := create(t, rt)
	wantEqual(t, "the first interpreter's call", mustCall(t, first, "function(a, b) return a + b end", 2, 3), int64(5))
	if err := first.Close(); err != nil {
		t.Fatalf("closing the first interpreter: %v", err)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	before, rss := hostNow(t), selfRSS(t)
	available := memAvailable(t)
	t.Logf("before: host RSS %s, %d goroutines, %d file descriptors, %d child processes",
		mib(rss), before.goroutines, before.fds, len(before.children))

	// Create them all, each with a global of its own.
	its := make([]*interpreters.Interpreter, n)
	began := time.Now()
	errs := inLanes(n, func(i int) error {
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
	created := time.Since(began)
	if failed(t, "creating", errs) {
		// The cleanup closes the runtime and TestMain checks that no
		// worker outlived it.
		t.FailNow()
	}
	t.Logf("created %d interpreters in %v (%v each, %d at a time)", n, created.Round(time.Millisecond),
		(created / time.Duration(n)).Round(time.Microsecond), thousandLanes)

	// Every one answers from its own state.
	began = time.Now()
	errs = inLanes(n, func(i int) error {
		got, err := its[i].Call("function(d) return k + d end", 1)
		if err != nil {
			return fmt.Errorf("%v.Call: %w", its[i], err)
		}
		if want := int64(i + 1); got != want {
			return fmt.Errorf("%v.Call = %#v (%T), want %d", its[i], got, got, want)
		}
		return nil
	})
	failed(t, "calling", errs)
	t.Logf("called all %d in %v", n, time.Since(began).Round(time.Millisecond))

	// The runtime lists exactly main and ours, each a worker of its own.
	all := listAll(t, rt)
	if len(all) != n+1 || all[0] != rt.GetMain() {
		t.Errorf("ListAll lists %d interpreters, want main and %d", len(all), n)
	}
	listed := make(map[*interpreters.Interpreter]bool, len(all))
	for _, it := range all {
		listed[it] = true
	}
	pids := make([]int, n)
	owner := make(map[int]int64, n)
	for i, it := range its {
		if !listed[it] {
			t.Errorf("%v is not in ListAll", it)
		}
		pids[i] = pid(t, it)
		if other, dup := owner[pids[i]]; dup {
			t.Errorf("interpreters %d and %d share worker %d", other, it.ID(), pids[i])
		}
		owner[pids[i]] = it.ID()
		if ppid, _, state, ok := procStat(pids[i]); !ok || ppid != os.Getpid() || state == "Z" {
			t.Errorf("%v: worker %d is not a live child of the host: %s", it, pids[i], isoDescribePid(pids[i]))
		}
	}

	// What they hold, idle, at full strength.
	var private, maxPrivate, pageTables int64
	var threads int
	for i, p := range pids {
		b, err := privateBytes(p)
		if err != nil {
			t.Fatalf("%v: private memory of worker %d: %v", its[i], p, err)
		}
		private += b
		maxPrivate = max(maxPrivate, b)
		pageTables += procKB(t, "/proc/"+strconv.Itoa(p)+"/status", "VmPTE:")
		threads += procThreads(t, p)
	}
	perInterp := private / int64(n)
	hostRSS, hostG, hostFDs := selfRSS(t), runtime.NumGoroutine(), openFDs(t)
	used := available - memAvailable(t)
	t.Logf("%d live interpreters: workers' private memory %s in all, %s each on average (largest %s)",
		n, mib(private), mib(perInterp), mib(maxPrivate))
	t.Logf("workers' page tables %s in all (%.0f KiB each), %d threads in all (%.1f each)",
		mib(pageTables), float64(pageTables)/float64(n)/1024, threads, float64(threads)/float64(n))
	t.Logf("host: RSS %s (+%s), %d goroutines (+%.1f each), %d file descriptors (+%.1f each)",
		mib(hostRSS), mib(hostRSS-rss), hostG, float64(hostG-before.goroutines)/float64(n), hostFDs, float64(hostFDs-before.fds)/float64(n))
	// System-wide: anything else running moves it, and so does memory the
	// kernel is still taking back from the workers of an earlier run.
	t.Logf("system: MemAvailable fell by %s (%s per interpreter, kernel memory included)",
		mib(used), mib(used/int64(n)))
	if perInterp > thousandPrivateLimit {
		t.Errorf("an idle interpreter holds %s of private memory on average, more than %s", mib(perInterp), mib(thousandPrivateLimit))
	}

	// Close them all; each Close returns once its worker is reaped.
	began = time.Now()
	errs = inLanes(n, func(i int) error { return its[i].Close() })
	closed := time.Since(began)
	failed(t, "closing", errs)
	t.Logf("closed %d interpreters in %v (%v each, %d at a time)", n, closed.Round(time.Millisecond),
		(closed / time.Duration(n)).Round(time.Microsecond), thousandLanes)
	wantList(t, "ListAll after closing every interpreter", listAll(t, rt), rt.GetMain())

	// The host is back where it started, with the runtime still up.
	after := wantHostBack(t, before, thousandGoroutines, thousandFDs, fmt.Sprintf("after closing %d interpreters", n))
	t.Logf("after: host RSS %s, %d goroutines, %d file descriptors, %d child processes", mib(selfRSS(t)), after.goroutines, after.fds, len(after.children))
	closeRT()
	if gone := childPids(pids); len(gone) > 0 {
		t.Errorf("workers still children of this process after Runtime.Close: %v", gone)
	}
	if orphans := isoOrphanedWorkers(); len(orphans) > 0 {
		t.Errorf("workers orphaned to init:\n\t%s", strings.Join(orphans, "\n\t"))
	}
}

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
