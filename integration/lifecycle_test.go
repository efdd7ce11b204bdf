package integration

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

func TestInterpreterIdentity(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a, b := create(t, rt), create(t, rt)
	if a == b || a.ID() == b.ID() {
		t.Fatalf("two Creates gave %v and %v", a, b)
	}
	for _, it := range []*interpreters.Interpreter{a, b} {
		got, err := rt.Lookup(it.ID())
		if err != nil {
			t.Fatalf("Lookup(%d): %v", it.ID(), err)
		}
		if got != it {
			t.Errorf("Lookup(%d) is not the pointer Create returned", it.ID())
		}
		if s := it.String(); s != fmt.Sprintf("Interpreter(%d)", it.ID()) {
			t.Errorf("String() = %q, want Interpreter(%d)", s, it.ID())
		}
		if w := it.Whence(); w != "_interpreters module" {
			t.Errorf("Whence() = %q, want %q", w, "_interpreters module")
		}
		wantRunning(t, it, false)
	}
	main, err := rt.Lookup(0)
	if err != nil || main != rt.GetMain() || main != rt.GetCurrent() {
		t.Errorf("Lookup(0) = %v, %v; want the runtime's main pointer", main, err)
	}
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), a, b)
	_, err = rt.Lookup(-1)
	wantInvalid(t, "Runtime.Lookup(-1)", err)
	_, err = rt.Lookup(b.ID() + 1000)
	wantNotFound(t, "Runtime.Lookup of an unused ID", err)
}

func TestListAllOrder(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	main := rt.GetMain()
	i1, i2, i3 := create(t, rt), create(t, rt), create(t, rt)
	if !(i1.ID() < i2.ID() && i2.ID() < i3.ID()) {
		t.Fatalf("IDs do not increase: %d, %d, %d", i1.ID(), i2.ID(), i3.ID())
	}
	wantList(t, "after creating three", listAll(t, rt), main, i1, i2, i3)
	if err := i2.Close(); err != nil {
		t.Fatal(err)
	}
	wantList(t, "after closing the middle one", listAll(t, rt), main, i1, i3)
	i4 := create(t, rt)
	if i4.ID() <= i3.ID() {
		t.Errorf("ID %d after %d: IDs must increase and never be reused", i4.ID(), i3.ID())
	}
	wantList(t, "after creating a fourth", listAll(t, rt), main, i1, i3, i4)
	closeAll(t, i1, i3, i4)
	wantList(t, "after closing all", listAll(t, rt), main)
	i5 := create(t, rt)
	if i5.ID() <= i4.ID() {
		t.Errorf("ID %d after closing every interpreter up to %d: reused", i5.ID(), i4.ID())
	}
}

// TestAfterClose: every method but ID, Whence and String reports a closed
// interpreter as not found; Lookup and ListAll forget it.
func TestAfterClose(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	other := create(t, rt)
	id := it.ID()
	if err := it.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if it.ID() != id || it.Whence() != interpreters.WhenceStdlib || it.String() != fmt.Sprintf("Interpreter(%d)", id) {
		t.Errorf("after Close: ID %d, Whence %q, String %q", it.ID(), it.Whence(), it.String())
	}
	_, err := it.IsRunning()
	wantNotFound(t, "IsRunning", err)
	_, err = it.Pid()
	wantNotFound(t, "Pid", err)
	wantNotFound(t, "Close again", it.Close())
	wantNotFound(t, "Exec", it.Exec("x = 1"))
	wantNotFound(t, "ExecContext", it.ExecContext(t.Context(), "x = 1"))
	_, err = it.Call("tostring", 1)
	wantNotFound(t, "Call", err)
	_, err = it.CallContext(t.Context(), "tostring", 1)
	wantNotFound(t, "CallContext", err)
	wantNotFound(t, "PrepareMain", it.PrepareMain(map[string]any{"spam": 1}))
	_, err = waitThread(t, it.CallInThread("tostring", 1))
	wantNotFound(t, "CallInThread", err)
	got, err := rt.Lookup(id)
	wantNotFound(t, "Lookup", err)
	if got != nil {
		t.Errorf("Lookup of a closed interpreter returned %v", got)
	}
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), other)
	// The other interpreter is untouched.
	if got := mustCall(t, other, "string.upper", "ok"); got != "OK" {
		t.Errorf("other interpreter call = %#v", got)
	}
}

func TestCloseFromGoroutine(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)
	done := make(chan error, 1)
	go func() { done <- it.Close() }()
	if err := <-done; err != nil {
		t.Fatalf("Close from a goroutine: %v", err)
	}
	waitGone(t, p)
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain())
}

// TestPid: each interpreter is a worker process of its own, a child of the
// host, reaped by Close.
func TestPid(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a, b := create(t, rt), create(t, rt)
	pa, pb := pid(t, a), pid(t, b)
	if pa <= 0 || pb <= 0 {
		t.Fatalf("pids %d, %d: want positive", pa, pb)
	}
	if pa == os.Getpid() || pb == os.Getpid() {
		t.Fatalf("a worker pid equals the host's own pid %d", os.Getpid())
	}
	if pa == pb {
		t.Fatalf("two interpreters share worker pid %d", pa)
	}
	if again := pid(t, a); again != pa {
		t.Errorf("Pid changed from %d to %d between two calls", pa, again)
	}
	for _, p := range []int{pa, pb} {
		if err := syscall.Kill(p, 0); err != nil {
			t.Errorf("kill(%d, 0) = %v: the worker process should exist", p, err)
		}
		if ppid, _, _, ok := proctest.Stat(p); ok && ppid != os.Getpid() {
			t.Errorf("worker %d has parent %d, want the host %d", p, ppid, os.Getpid())
		}
	}
	// A call keeps the same process.
	mustExec(t, a, "x = 1")
	if again := pid(t, a); again != pa {
		t.Errorf("Pid changed from %d to %d across Exec", pa, again)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pa)
	if !alive(pb) {
		t.Errorf("closing one interpreter ended another's worker %d", pb)
	}
}

// TestConcurrentCreate: creating from several goroutines at once gives
// distinct interpreters, all listed, all usable.
func TestConcurrentCreate(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	const n = 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		made []*interpreters.Interpreter
		errs []error
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it, err := rt.Create()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			made = append(made, it)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Create: %v", errs)
	}
	sort.Slice(made, func(i, j int) bool { return made[i].ID() < made[j].ID() })
	for i := 1; i < len(made); i++ {
		if made[i].ID() == made[i-1].ID() {
			t.Fatalf("two concurrent Creates got ID %d", made[i].ID())
		}
	}
	wantList(t, "ListAll after concurrent Create", listAll(t, rt), append([]*interpreters.Interpreter{rt.GetMain()}, made...)...)
	pids := map[int]bool{}
	for _, it := range made {
		if got := mustCall(t, it, "function(x) return x * 2 end", it.ID()); got != it.ID()*2 {
			t.Errorf("%v: call = %#v", it, got)
		}
		pids[pid(t, it)] = true
	}
	if len(pids) != n {
		t.Errorf("%d interpreters have %d distinct pids", n, len(pids))
	}
}

// TestInterpretersAreIsolated: each interpreter has its own globals.
func TestInterpretersAreIsolated(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	a, b := create(t, rt), create(t, rt)
	mustExec(t, a, "spam = 'a'")
	mustExec(t, b, "spam = 'b'")
	wantEqual(t, "spam in a", global(t, a, "spam"), "a")
	wantEqual(t, "spam in b", global(t, b, "spam"), "b")
	mustExec(t, a, "only_in_a = true")
	wantEqual(t, "only_in_a in b", global(t, b, "only_in_a"), nil)
}

// TestRuntimeClose: closing a runtime ends its interpreters and their
// workers; their handles then report not found.
func TestRuntimeClose(t *testing.T) {
	t.Parallel()
	rt := interpreters.New()
	a := create(t, rt)
	b := create(t, rt)
	pa, pb := pid(t, a), pid(t, b)
	if err := rt.Close(); err != nil {
		t.Fatalf("Runtime.Close: %v", err)
	}
	waitGone(t, pa)
	waitGone(t, pb)
	wantNotFound(t, "Exec after Runtime.Close", a.Exec("x = 1"))
	_, err := b.Call("tostring", 1)
	wantNotFound(t, "Call after Runtime.Close", err)
	if _, err := rt.Create(); err == nil {
		t.Error("Create on a closed runtime succeeded")
	} else if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("Create on a closed runtime: %v should match ErrInterpreter", err)
	}
	if err := rt.Close(); err != nil {
		t.Errorf("second Runtime.Close: %v", err)
	}
}

// TestCreatedInsideInterpreter: an interpreter created from Lua is an
// interpreter of the same runtime, listed after its creator, and closing the
// creator does not close it.
func TestCreatedInsideInterpreter(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	parent := create(t, rt)
	mustExec(t, parent, `
		local interpreters = require("interpreters")
		child = interpreters.create()
		child_id = child.id
	`)
	childID, ok := global(t, parent, "child_id").(int64)
	if !ok || childID <= parent.ID() {
		t.Fatalf("child_id = %#v, want an int64 above the creator's ID %d", global(t, parent, "child_id"), parent.ID())
	}
	child, err := rt.Lookup(childID)
	if err != nil {
		t.Fatalf("Lookup of the interpreter created in Lua: %v", err)
	}
	if child.Whence() != "_interpreters module" {
		t.Errorf("Whence = %q, want %q", child.Whence(), "_interpreters module")
	}
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), parent, child)
	childPid := pid(t, child)
	if childPid == pid(t, parent) {
		t.Error("the child shares its creator's worker process")
	}
	if err := parent.Close(); err != nil {
		t.Fatalf("closing the creator: %v", err)
	}
	wantList(t, "ListAll after closing the creator", listAll(t, rt), rt.GetMain(), child)
	wantEqual(t, "call in the child", mustCall(t, child, "string.upper", "alive"), "ALIVE")
	if got := pid(t, child); got != childPid {
		t.Errorf("child pid changed from %d to %d", childPid, got)
	}
}
