package integration

import (
	"math"
	"os"
	"sync"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

// The tests in this file use the package-level functions, that is the
// default runtime, or the host's os.Stdout. They are not parallel: each
// expects the default runtime to hold only main when it starts, and leaves
// it so.

func TestListAllInitial(t *testing.T) {
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	if len(all) != 1 {
		t.Fatalf("ListAll = %v, want only main", all)
	}
	if all[0] != interpreters.GetMain() {
		t.Errorf("ListAll()[0] = %v is not the GetMain() pointer", all[0])
	}
}

func TestCreateInMain(t *testing.T) {
	useDefault(t)
	it := createDefault(t)
	if it.ID() <= 0 {
		t.Errorf("created interpreter ID = %d, want > 0", it.ID())
	}
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	wantList(t, "after Create", all, interpreters.GetMain(), it)
	got, err := interpreters.Lookup(it.ID())
	if err != nil {
		t.Fatalf("Lookup(%d): %v", it.ID(), err)
	}
	if got != it {
		t.Errorf("Lookup(%d) returned a different *Interpreter than Create", it.ID())
	}
}

func TestCreateInGoroutine(t *testing.T) {
	useDefault(t)
	var it *interpreters.Interpreter
	var err error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		it, err = interpreters.Create()
	}()
	wg.Wait()
	if err != nil {
		t.Fatalf("Create in a goroutine: %v", err)
	}
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	if !contains(all, it) {
		t.Errorf("ListAll = %v does not hold the interpreter created in a goroutine (%v)", all, it)
	}
}

func TestCreateAfterDestroyAll(t *testing.T) {
	useDefault(t)
	var made []*interpreters.Interpreter
	for range 3 {
		made = append(made, createDefault(t))
	}
	closeAll(t, made...)
	it := createDefault(t)
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	wantList(t, "after closing all and creating one", all, interpreters.GetMain(), it)
	for _, old := range made {
		if it.ID() <= old.ID() {
			t.Errorf("new interpreter ID %d is not above closed ID %d: IDs must increase and never be reused", it.ID(), old.ID())
		}
	}
}

func TestCreateAfterDestroySome(t *testing.T) {
	useDefault(t)
	i1, i2, i3 := createDefault(t), createDefault(t), createDefault(t)
	closeAll(t, i1, i2)
	it := createDefault(t)
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	wantList(t, "after closing two of three and creating one", all, interpreters.GetMain(), i3, it)
}

func TestListAllAfterCreating(t *testing.T) {
	useDefault(t)
	main := interpreters.GetCurrent()
	first, second := createDefault(t), createDefault(t)
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	wantEqual(t, "ListAll IDs", ids(all), []int64{main.ID(), first.ID(), second.ID()})
	// Idempotent: the very same pointers, every time.
	wantList(t, "ListAll", all, main, first, second)
	again, _ := interpreters.ListAll()
	wantList(t, "second ListAll", again, main, first, second)
}

func TestListAllAfterDestroying(t *testing.T) {
	useDefault(t)
	main := interpreters.GetCurrent()
	first, second := createDefault(t), createDefault(t)
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	wantEqual(t, "ListAll IDs after closing the first", ids(all), []int64{main.ID(), second.ID()})
}

func TestGetMain(t *testing.T) {
	main := interpreters.GetMain()
	if main == nil {
		t.Fatal("GetMain returned nil")
	}
	if main.ID() != 0 {
		t.Errorf("main ID = %d, want 0", main.ID())
	}
	if main != interpreters.GetMain() {
		t.Error("GetMain is not idempotent: two calls gave different pointers")
	}
	if main != interpreters.GetCurrent() {
		t.Error("in the host, GetCurrent() should be the GetMain() pointer")
	}
	if interpreters.GetCurrent() != interpreters.GetCurrent() {
		t.Error("GetCurrent is not idempotent")
	}
	if interpreters.WhenceRuntime != "runtime init" || interpreters.WhenceStdlib != "_interpreters module" {
		t.Errorf("Whence constants = %q, %q", interpreters.WhenceRuntime, interpreters.WhenceStdlib)
	}
	if got := main.Whence(); got != "runtime init" {
		t.Errorf("main Whence = %q, want %q", got, "runtime init")
	}
	if got := main.String(); got != "Interpreter(0)" {
		t.Errorf("main String = %q, want Interpreter(0)", got)
	}
	running, err := main.IsRunning()
	if err != nil || !running {
		t.Errorf("main IsRunning = %v, %v; want true, nil (main always runs)", running, err)
	}
	p, err := main.Pid()
	if err != nil || p != os.Getpid() {
		t.Errorf("main Pid = %d, %v; want the host's own pid %d", p, err, os.Getpid())
	}
	got, err := interpreters.Lookup(0)
	if err != nil || got != main {
		t.Errorf("Lookup(0) = %v, %v; want the GetMain() pointer", got, err)
	}
}

func TestLookupErrors(t *testing.T) {
	for _, id := range []int64{-1, -100, math.MinInt64} {
		it, err := interpreters.Lookup(id)
		wantInvalid(t, "Lookup of a negative ID", err)
		if it != nil {
			t.Errorf("Lookup(%d) returned %v along with an error", id, it)
		}
	}
	for _, id := range []int64{1_000_000, math.MaxInt64} {
		it, err := interpreters.Lookup(id)
		wantNotFound(t, "Lookup of an ID that never existed", err)
		if it != nil {
			t.Errorf("Lookup(%d) returned %v along with an error", id, it)
		}
	}
}

func TestLookupCreated(t *testing.T) {
	useDefault(t)
	it := createDefault(t)
	got, err := interpreters.Lookup(it.ID())
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if got != it {
		t.Errorf("Lookup(%d) is not the pointer Create returned", it.ID())
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, err = interpreters.Lookup(it.ID())
	wantNotFound(t, "Lookup after Close", err)
	if got != nil {
		t.Errorf("Lookup after Close returned %v", got)
	}
}

// TestMainRestricted: the host, like CPython's main interpreter, cannot be
// closed, exec'd, called or prepared.
func TestMainRestricted(t *testing.T) {
	main := interpreters.GetMain()
	wantUnrecognized(t, "main.Close", main.Close())
	wantUnrecognized(t, "main.Exec", main.Exec("x = 1"))
	wantUnrecognized(t, "main.ExecContext", main.ExecContext(t.Context(), "x = 1"))
	_, err := main.Call("print")
	wantUnrecognized(t, "main.Call", err)
	_, err = main.CallContext(t.Context(), "print")
	wantUnrecognized(t, "main.CallContext", err)
	wantUnrecognized(t, "main.PrepareMain", main.PrepareMain(map[string]any{"spam": 1}))
	_, err = waitThread(t, main.CallInThread("print"))
	wantUnrecognized(t, "main.CallInThread", err)

	// From another goroutine too; and main is still there afterwards.
	done := make(chan error, 1)
	go func() { done <- main.Close() }()
	wantUnrecognized(t, "main.Close from a goroutine", <-done)
	if running, err := main.IsRunning(); err != nil || !running {
		t.Errorf("main IsRunning after the refused Close = %v, %v", running, err)
	}
	all, err := interpreters.ListAll()
	if err != nil || len(all) == 0 || all[0] != main {
		t.Errorf("ListAll after the refused Close = %v, %v; want main first", all, err)
	}
}

// TestIDsIncrease: created interpreters get increasing IDs above main's,
// never reused.
func TestIDsIncrease(t *testing.T) {
	useDefault(t)
	a := createDefault(t)
	b := createDefault(t)
	if !(0 < a.ID() && a.ID() < b.ID()) {
		t.Fatalf("IDs %d, %d: want 0 < first < second", a.ID(), b.ID())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c := createDefault(t)
	if c.ID() <= b.ID() {
		t.Errorf("ID %d after closing %d: the newest closed ID was reused or went backwards", c.ID(), b.ID())
	}
	if a.Whence() != interpreters.WhenceStdlib || c.Whence() != "_interpreters module" {
		t.Errorf("Whence = %q, %q; want %q", a.Whence(), c.Whence(), "_interpreters module")
	}
}

// TestShutdown: Shutdown closes every interpreter of the default runtime,
// running or idle, and the next package-level call starts a fresh one.
func TestShutdown(t *testing.T) {
	useDefault(t)
	idle, err := interpreters.Create()
	if err != nil {
		t.Fatal(err)
	}
	busy, err := interpreters.Create()
	if err != nil {
		t.Fatal(err)
	}
	idlePid, busyPid := pid(t, idle), pid(t, busy)
	loop := startExec(t.Context(), busy, "while true do end")
	waitRunning(t, busy, loop.done)

	if err := interpreters.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The running call ends (with an error) instead of hanging.
	if _, err := loop.wait(t); err == nil {
		t.Error("a call running during Shutdown returned no error")
	}
	waitGone(t, idlePid)
	waitGone(t, busyPid)

	// Closed by Shutdown means closed: every method but ID, Whence and
	// String reports the interpreter as not found.
	for _, it := range []*interpreters.Interpreter{idle, busy} {
		_, err := it.IsRunning()
		wantNotFound(t, "IsRunning after Shutdown", err)
		wantNotFound(t, "Exec after Shutdown", it.Exec("x = 1"))
		_, err = it.Pid()
		wantNotFound(t, "Pid after Shutdown", err)
		wantNotFound(t, "Close after Shutdown", it.Close())
	}

	// A fresh default runtime: only main, the old IDs unknown, and it works.
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll after Shutdown: %v", err)
	}
	if len(all) != 1 || all[0].ID() != 0 || all[0] != interpreters.GetMain() {
		t.Errorf("ListAll after Shutdown = %v, want only main", all)
	}
	_, err = interpreters.Lookup(idle.ID())
	wantNotFound(t, "Lookup of an interpreter closed by Shutdown", err)
	fresh := createDefault(t)
	if fresh == idle || fresh == busy {
		t.Error("the fresh runtime handed out a handle of the old one")
	}
	if got := mustCall(t, fresh, "function(a, b) return a + b end", 40, 2); got != int64(42) {
		t.Errorf("call in the fresh runtime = %#v, want 42", got)
	}
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
	// Shutdown is repeatable.
	if err := interpreters.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := interpreters.Shutdown(); err != nil {
		t.Errorf("Shutdown of a runtime never used: %v", err)
	}
}

// TestNewIsIndependent: a runtime from New has its own main and its own
// interpreters; the default runtime does not see them and vice versa.
func TestNewIsIndependent(t *testing.T) {
	useDefault(t)
	inDefault := createDefault(t)
	rt := newRuntime(t)
	if rt.GetMain() == interpreters.GetMain() {
		t.Error("New() shares its main *Interpreter with the default runtime")
	}
	if rt.GetMain().ID() != 0 || rt.GetCurrent() != rt.GetMain() {
		t.Errorf("New() main = %v, current = %v", rt.GetMain(), rt.GetCurrent())
	}
	_, err := rt.Lookup(inDefault.ID())
	wantNotFound(t, "a new runtime's Lookup of a default-runtime interpreter", err)
	wantList(t, "a new runtime before Create", listAll(t, rt), rt.GetMain())

	local := create(t, rt)
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatal(err)
	}
	if contains(all, local) {
		t.Error("the default runtime lists an interpreter of another runtime")
	}
	wantList(t, "default ListAll", all, interpreters.GetMain(), inDefault)
	wantList(t, "new runtime ListAll", listAll(t, rt), rt.GetMain(), local)

	// Closing one runtime leaves the other's interpreters alone.
	localPid := pid(t, local)
	if err := rt.Close(); err != nil {
		t.Fatalf("Runtime.Close: %v", err)
	}
	waitGone(t, localPid)
	_, err = local.IsRunning()
	wantNotFound(t, "IsRunning of an interpreter of a closed runtime", err)
	if got := mustCall(t, inDefault, "function() return 'still here' end"); got != "still here" {
		t.Errorf("default-runtime call after closing another runtime = %#v", got)
	}
	if _, err := rt.Create(); err == nil {
		t.Error("Create on a closed runtime succeeded")
	}
}

// TestDefaultStdoutIsHostStdout: without WithStdout, print goes to the
// host's os.Stdout as it is at the time of the write.
func TestDefaultStdoutIsHostStdout(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := os.Stdout
	os.Stdout = w
	restored := false
	restore := func() {
		if !restored {
			os.Stdout = saved
			restored = true
			w.Close()
		}
	}
	defer restore()

	rt := newRuntime(t)
	it, err := rt.Create()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := it.Exec(`print("to the host", 1) io.write("done")`); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	restore()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	if got, want := string(out), "to the host\t1\ndone"; got != want {
		t.Errorf("host stdout got %q, want %q", got, want)
	}
}
