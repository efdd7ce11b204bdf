package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// Chaos run parameters. SUBINTERP_SOAK (a duration such as "5m") turns the
// short run into a soak; SUBINTERP_CHAOS_SEED replays a run's choices.
const (
	chaosInterpreters = 32
	chaosShort        = 5 * time.Second
	// chaosOvershoot is how far past its deadline a call may return.
	chaosOvershoot = time.Second
	// chaosHang is how far past its deadline a call may go before it
	// counts as hung and the test stops waiting for it.
	chaosHang = 15 * time.Second
	// chaosMemory is each interpreter's memory limit.
	chaosMemory = 64 << 20
	// chaosCPU is each interpreter's CPU time per call.
	chaosCPU = time.Second
)

// chaosOp is one kind of thing an interpreter is asked to do, with the
// outcomes (besides its worker dying under it) that answer it correctly.
type chaosOp struct {
	name   string
	weight int
	run    func(c *chaosCall) (any, error)
	// ok reports whether a call's outcome is one this op may have; class
	// is the outcome's class (see isoChaosClass).
	ok func(c *chaosCall, class string, res any, err error) bool
}

// chaosCall is one call in progress: its interpreter, deadline and the
// values the op chose.
type chaosCall struct {
	it       *interpreters.Interpreter
	rng      *rand.Rand
	ctx      context.Context
	deadline time.Time
	n        int64
}

func (c *chaosCall) within(d time.Duration) (context.Context, context.CancelFunc) {
	c.deadline = time.Now().Add(d)
	return context.WithDeadline(context.Background(), c.deadline)
}

// isoChaosClass names the outcome of a call: "ok" or the typed failure.
func isoChaosClass(err error) string {
	var wee *interpreters.WorkerExitError
	var ef *interpreters.ExecutionFailed
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &wee):
		if errors.Is(err, interpreters.ErrMemoryLimit) {
			return "WorkerExitError(memory)"
		}
		return "WorkerExitError(" + wee.Signal + ")"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errors.Is(err, interpreters.ErrCPULimit):
		return "CPULimit"
	case errors.As(err, &ef):
		return "ExecutionFailed(" + ef.Type + ")"
	case errors.Is(err, interpreters.ErrMemoryLimit):
		return "MemoryLimit"
	case errors.Is(err, interpreters.ErrInterpreterNotFound):
		return "NotFound"
	}
	return "untyped"
}

func isoOneOf(class string, want ...string) bool {
	for _, w := range want {
		if class == w {
			return true
		}
	}
	return false
}

var chaosOps = []chaosOp{
	{name: "sum", weight: 30,
		run: func(c *chaosCall) (any, error) {
			c.n = 1 + c.rng.Int63n(20000)
			ctx, cancel := c.within(20 * time.Second)
			defer cancel()
			return c.it.CallContext(ctx, "function(n) local s = 0 for i = 1, n do s = s + i end return s end", c.n)
		},
		ok: func(c *chaosCall, class string, res any, _ error) bool {
			if class == "ok" {
				return res == c.n*(c.n+1)/2
			}
			return isoOneOf(class, "DeadlineExceeded", "CPULimit")
		}},
	{name: "error", weight: 10,
		run: func(c *chaosCall) (any, error) {
			ctx, cancel := c.within(20 * time.Second)
			defer cancel()
			return nil, c.it.ExecContext(ctx, "local x = {1, 2, 3} error({type = 'ValueError', msg = 'chaos ' .. #x})")
		},
		ok: func(_ *chaosCall, class string, _ any, err error) bool {
			var ef *interpreters.ExecutionFailed
			if errors.As(err, &ef) {
				return ef.Type == "ValueError" && ef.Msg == "chaos 3"
			}
			return class == "DeadlineExceeded"
		}},
	{name: "loop", weight: 10,
		run: func(c *chaosCall) (any, error) {
			ctx, cancel := c.within(time.Duration(50+c.rng.Intn(350)) * time.Millisecond)
			defer cancel()
			return nil, c.it.ExecContext(ctx, "while true do end")
		},
		ok: func(_ *chaosCall, class string, _ any, _ error) bool { return class == "DeadlineExceeded" }},
	{name: "cpu", weight: 4,
		run: func(c *chaosCall) (any, error) {
			ctx, cancel := c.within(30 * time.Second)
			defer cancel()
			return nil, c.it.ExecContext(ctx, "local x = 0 while true do x = x + 1 end")
		},
		ok: func(_ *chaosCall, class string, _ any, _ error) bool {
			return isoOneOf(class, "CPULimit", "DeadlineExceeded")
		}},
	{name: "memory", weight: 8,
		run: func(c *chaosCall) (any, error) {
			ctx, cancel := c.within(30 * time.Second)
			defer cancel()
			return nil, c.it.ExecContext(ctx, isoAllocLoop)
		},
		ok: func(_ *chaosCall, class string, _ any, _ error) bool {
			return isoOneOf(class, "ExecutionFailed(MemoryError)", "MemoryLimit", "WorkerExitError(memory)", "DeadlineExceeded", "CPULimit")
		}},
	{name: "exit", weight: 8,
		run: func(c *chaosCall) (any, error) {
			c.n = c.rng.Int63n(100)
			ctx, cancel := c.within(20 * time.Second)
			defer cancel()
			return nil, c.it.ExecContext(ctx, fmt.Sprintf("os.exit(%d)", c.n))
		},
		ok: func(c *chaosCall, class string, _ any, err error) bool {
			var ef *interpreters.ExecutionFailed
			if errors.As(err, &ef) {
				return ef.Type == "SystemExit" && ef.Msg == strconv.FormatInt(c.n, 10)
			}
			return class == "DeadlineExceeded"
		}},
	{name: "queue", weight: 20,
		run: func(c *chaosCall) (any, error) {
			c.n = c.rng.Int63n(1 << 40)
			ctx, cancel := c.within(20 * time.Second)
			defer cancel()
			return c.it.CallContext(ctx, `function(v)
				q:put(v)
				local got = q:get({timeout = 5})
				if got == require("interpreters").UNBOUND then return "unbound" end
				return got
			end`, c.n)
		},
		ok: func(_ *chaosCall, class string, res any, _ error) bool {
			if class == "ok" {
				// An item some interpreter or the host put, or the
				// sentinel left by an interpreter whose worker was killed.
				_, isInt := res.(int64)
				return isInt || res == "from the host" || res == "unbound"
			}
			return isoOneOf(class, "ExecutionFailed(QueueEmpty)", "DeadlineExceeded")
		}},
}

// chaosSlot is one of the interpreters kept busy; when its worker dies a
// new interpreter takes its place.
type chaosSlot struct {
	mu  sync.Mutex
	it  *interpreters.Interpreter
	pid int
}

func (s *chaosSlot) get() (*interpreters.Interpreter, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.it, s.pid
}

func (s *chaosSlot) set(it *interpreters.Interpreter, pid int) {
	s.mu.Lock()
	s.it, s.pid = it, pid
	s.mu.Unlock()
}

// chaosStats are a run's counts.
type chaosStats struct {
	mu           sync.Mutex
	outcomes     map[string]int
	byOp         map[string]int
	failures     []string
	maxOvershoot time.Duration
	overshootOp  string
	kills        atomic.Int64
	replaced     atomic.Int64
	hostQueueOps atomic.Int64
	calls        atomic.Int64
}

func (st *chaosStats) fail(format string, args ...any) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failures = append(st.failures, fmt.Sprintf(format, args...))
}

func (st *chaosStats) record(op, class string, overshoot time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.outcomes[class]++
	st.byOp[op]++
	if overshoot > st.maxOvershoot {
		st.maxOvershoot, st.overshootOp = overshoot, op
	}
}

func isoSortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n\t%-32s %d", k, m[k])
	}
	return b.String()
}

// TestChaos keeps 32 interpreters busy with a seeded random mix of good
// scripts, errors, runaway loops under deadlines, memory bombs under a
// memory limit, os.exit and queue traffic, while their workers are killed
// from outside. Every call must be answered, correctly or with a typed
// error, within a second of its deadline; dead interpreters are replaced;
// and once the runtime is closed no worker process is left.
//
// It does not run in parallel: at the end it checks this process's
// children.
func TestChaos(t *testing.T) {
	dur := chaosShort
	soak := os.Getenv("SUBINTERP_SOAK")
	if soak != "" {
		d, err := time.ParseDuration(soak)
		if err != nil || d <= 0 {
			t.Fatalf("SUBINTERP_SOAK=%q: want a duration such as 5m", soak)
		}
		dur = d
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("SUBINTERP_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("SUBINTERP_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("chaos for %v with seed %d (SUBINTERP_CHAOS_SEED=%d replays its choices)", dur, seed, seed)

	// Earlier tests' runtimes close in the background; let them finish so
	// that the children left at the end are ours.
	backgroundCloses.Wait()
	before := make(map[int]bool)
	for _, p := range proctest.Children() {
		before[p] = true
	}

	rt := interpreters.New(interpreters.WithWarmSpares(2))
	closeRT := closeAtCleanup(t, rt)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}

	st := &chaosStats{outcomes: make(map[string]int), byOp: make(map[string]int)}
	var (
		pidsMu   sync.Mutex
		allPids  []int
		killedMu sync.Mutex
		killed   = make(map[int]bool)
	)
	wasKilled := func(p int) bool {
		killedMu.Lock()
		defer killedMu.Unlock()
		return killed[p]
	}
	spawn := func() (*interpreters.Interpreter, int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), bounded)
		defer cancel()
		it, err := rt.CreateContext(ctx, interpreters.WithMemoryLimit(chaosMemory), interpreters.WithCPULimit(chaosCPU))
		if err != nil {
			return nil, 0, err
		}
		if err := it.PrepareMain(map[string]any{"q": q}); err != nil {
			return it, 0, fmt.Errorf("PrepareMain: %w", err)
		}
		p, err := it.Pid()
		if err != nil {
			return it, 0, fmt.Errorf("Pid: %w", err)
		}
		pidsMu.Lock()
		allPids = append(allPids, p)
		pidsMu.Unlock()
		return it, p, nil
	}

	slots := make([]*chaosSlot, chaosInterpreters)
	var wg sync.WaitGroup
	for i := range slots {
		slots[i] = &chaosSlot{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			it, p, err := spawn()
			if err != nil {
				st.fail("creating interpreter %d: %v", i, err)
				return
			}
			slots[i].set(it, p)
		}()
	}
	wg.Wait()
	if len(st.failures) > 0 {
		t.Fatalf("setting up: %s", strings.Join(st.failures, "; "))
	}

	total := 0
	for _, op := range chaosOps {
		total += op.weight
	}
	pick := func(rng *rand.Rand) chaosOp {
		n := rng.Intn(total)
		for _, op := range chaosOps {
			if n < op.weight {
				return op
			}
			n -= op.weight
		}
		return chaosOps[0]
	}

	stop := make(chan struct{})
	guard := func(what string) {
		if r := recover(); r != nil {
			st.fail("%s panicked: %v\n%s", what, r, debug.Stack())
		}
	}

	// Each slot's goroutine runs one call after another.
	for i, slot := range slots {
		rng := rand.New(rand.NewSource(seed + int64(i) + 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer guard(fmt.Sprintf("slot %d", i))
			for {
				select {
				case <-stop:
					return
				default:
				}
				it, p := slot.get()
				op := pick(rng)
				c := &chaosCall{it: it, rng: rng}
				type answer struct {
					res any
					err error
				}
				done := make(chan answer, 1)
				go func() {
					defer guard(op.name + " call")
					res, err := op.run(c)
					done <- answer{res, err}
				}()
				var a answer
				select {
				case a = <-done:
				case <-time.After(2 * time.Minute):
					// c.deadline is set by now: every op sets it first.
					st.fail("slot %d: %s in %v did not return %v after it began", i, op.name, it, 2*time.Minute)
					return
				}
				returned := time.Now()
				st.calls.Add(1)
				overshoot := returned.Sub(c.deadline)
				if overshoot > chaosHang {
					st.fail("slot %d: %s in %v returned %v past its deadline", i, op.name, it, overshoot)
				}
				class := isoChaosClass(a.err)
				st.record(op.name, class, overshoot)
				if overshoot > chaosOvershoot {
					st.fail("slot %d: %s in %v returned %v past its deadline (%s)", i, op.name, it, overshoot, class)
				}

				gone := false
				switch {
				case strings.HasPrefix(class, "WorkerExitError"):
					gone = true
					if class != "WorkerExitError(memory)" && !wasKilled(p) {
						st.fail("slot %d: %s in %v: its worker %d died unprovoked: %v", i, op.name, it, p, a.err)
					}
				case class == "NotFound":
					gone = true
					if !wasKilled(p) && !isoProcessEnded(p) {
						st.fail("slot %d: %s in %v: not found while its worker %d lives", i, op.name, it, p)
					}
				case class == "untyped":
					st.fail("slot %d: %s in %v: untyped error %q (%T)", i, op.name, it, a.err, a.err)
				case !op.ok(c, class, a.res, a.err):
					st.fail("slot %d: %s in %v: unexpected outcome %s: res %#v, err %v", i, op.name, it, class, a.res, a.err)
				}
				if !gone {
					continue
				}
				// The supervisor may still be taking the dead interpreter
				// down; Close says whether it already has.
				if err := it.Close(); err != nil && !errors.Is(err, interpreters.ErrInterpreterNotFound) {
					st.fail("slot %d: Close of the dead %v: %v", i, it, err)
				}
				nit, np, err := spawn()
				if err != nil {
					st.fail("slot %d: replacing %v: %v", i, it, err)
					return
				}
				slot.set(nit, np)
				st.replaced.Add(1)
			}
		}()
	}

	// The killer ends a random worker every so often, busy or not.
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		defer guard("killer")
		rng := rand.New(rand.NewSource(seed))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(100+rng.Intn(600)) * time.Millisecond):
			}
			_, p := slots[rng.Intn(len(slots))].get()
			// Only a live worker of ours: never a recycled pid, which may
			// now be another child of this process (a daemon another test
			// started).
			if !liveWorkerOfOurs(p) {
				continue
			}
			killedMu.Lock()
			killed[p] = true
			killedMu.Unlock()
			if err := syscall.Kill(p, syscall.SIGKILL); err == nil {
				st.kills.Add(1)
			}
		}
	}()

	// The host takes part in the queue traffic too.
	hostDone := make(chan struct{})
	go func() {
		defer close(hostDone)
		defer guard("host queue traffic")
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := q.PutNowait("from the host"); err != nil {
				st.fail("host PutNowait: %v", err)
			}
			if _, err := q.GetNowait(); err != nil && !errors.Is(err, interpreters.ErrQueueEmpty) {
				st.fail("host GetNowait: %v", err)
			}
			st.hostQueueOps.Add(2)
		}
	}()

	time.Sleep(dur)
	close(stop)
	waited := make(chan struct{})
	go func() {
		wg.Wait()
		<-killerDone
		<-hostDone
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the chaos goroutines did not stop within 3m of the end")
	}

	// Every slot holds a live interpreter (or one the killer got last), and
	// the runtime lists no other: dead ones were not left behind.
	current := make(map[*interpreters.Interpreter]bool)
	lateKills := 0
	for i, slot := range slots {
		it, p := slot.get()
		switch err := it.Exec("x = 1"); {
		case err == nil:
			current[it] = true
		case wasKilled(p) && (errors.Is(err, interpreters.ErrInterpreterNotFound) || errors.As(err, new(*interpreters.WorkerExitError))):
			lateKills++
		default:
			t.Errorf("slot %d: %v after the run: %v", i, it, err)
		}
	}
	all := listAll(t, rt)
	for _, it := range all[1:] {
		if !current[it] {
			// The killer's last victims may not have been noticed yet.
			if _, err := it.Pid(); err == nil {
				t.Errorf("ListAll holds %v, which is no slot's live interpreter", it)
			}
		}
	}

	st.mu.Lock()
	report := fmt.Sprintf("chaos %v, seed %d: %d calls, %d kills, %d interpreters replaced, %d host queue ops, "+
		"max overshoot past a deadline %v (%s)\noutcomes:%s\nops:%s",
		dur, seed, st.calls.Load(), st.kills.Load(), st.replaced.Load(), st.hostQueueOps.Load(),
		st.maxOvershoot.Round(time.Millisecond), st.overshootOp, isoSortedCounts(st.outcomes), isoSortedCounts(st.byOp))
	failures := append([]string(nil), st.failures...)
	st.mu.Unlock()
	t.Log(report)
	if soak != "" {
		fmt.Println(report)
	}
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more failures", len(failures)-20)
			break
		}
		t.Error(f)
	}
	if st.calls.Load() < chaosInterpreters {
		t.Errorf("only %d calls in %v", st.calls.Load(), dur)
	}
	if st.kills.Load() == 0 {
		t.Errorf("no worker was killed in %v", dur)
	}
	if lateKills > 0 {
		t.Logf("%d slots lost their interpreter to the last kills", lateKills)
	}

	// Once the runtime is closed no worker is left: none of ours is a
	// child any more, and none was orphaned to init.
	closeRT()
	deadline := time.Now().Add(5 * time.Second)
	var left []string
	for {
		left = left[:0]
		for _, p := range proctest.Children() {
			if !before[p] {
				left = append(left, proctest.Describe(p))
			}
		}
		pidsMu.Lock()
		for _, p := range allPids {
			if ppid, _, state, ok := proctest.Stat(p); ok && state != "Z" && ppid != os.Getpid() && isoSameExecutable(p) {
				left = append(left, proctest.Describe(p)+" (orphaned)")
			}
		}
		pidsMu.Unlock()
		left = append(left, isoOrphanedWorkers()...)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("after Runtime.Close, %d worker process(es) remain:\n\t%s", len(left), strings.Join(left, "\n\t"))
	}
}

// isoProcessEnded reports whether the worker process with this pid has ended:
// reaped, a zombie, or its pid now held by a process that is not our child.
func isoProcessEnded(pid int) bool {
	ppid, _, state, ok := proctest.Stat(pid)
	return !ok || state == "Z" || ppid != os.Getpid()
}

// isoOrphanedWorkers lists live processes reparented to init that run this
// test binary as a worker.
func isoOrphanedWorkers() []string {
	var out []string
	for _, p := range proctest.Orphans() {
		if isoSameExecutable(p) {
			out = append(out, proctest.Describe(p)+" (orphaned to init)")
		}
	}
	return out
}

// isoSameExecutable reports whether process p runs this test binary.
func isoSameExecutable(p int) bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(p) + "/exe")
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == strings.TrimSuffix(self, " (deleted)")
}
