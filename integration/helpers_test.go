package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// bounded is the longest any single wait in these tests may take before
// the test fails instead of hanging. Only a hang should reach it: the
// suite runs under the race detector, in parallel, on machines shared with
// other work (make stress adds a CPU hog on every core), where starting a
// few workers and running a few calls has taken over 15 s.
const bounded = 60 * time.Second

// newRuntime returns a local runtime of its own. When the test ends the
// runtime is closed in the background, so no other test waits for its
// workers to be reaped. TestMain waits for every such close, and fails the
// run if one failed, before it checks that no worker is left.
func newRuntime(t *testing.T, opts ...interpreters.Option) *interpreters.Runtime {
	t.Helper()
	rt := interpreters.New(opts...)
	name := t.Name()
	t.Cleanup(func() {
		backgroundCloses.Add(1)
		go func() {
			defer backgroundCloses.Done()
			if err := rt.Close(); err != nil {
				backgroundErrs.add(name + ": Runtime.Close: " + err.Error())
			}
		}()
	})
	return rt
}

var (
	backgroundCloses sync.WaitGroup
	backgroundErrs   errList
)

type errList struct {
	mu   sync.Mutex
	errs []string
}

func (l *errList) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, s)
}

func (l *errList) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// create makes an interpreter in rt or fails the test.
func create(t *testing.T, rt *interpreters.Runtime, opts ...interpreters.Option) *interpreters.Interpreter {
	t.Helper()
	it, err := rt.Create(opts...)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if it == nil {
		t.Fatal("Create returned a nil *Interpreter and no error")
	}
	return it
}

// createDefault makes an interpreter in the default runtime. A test that
// uses it starts with useDefault, which closes what the test left.
func createDefault(t *testing.T) *interpreters.Interpreter {
	t.Helper()
	it, err := interpreters.Create()
	if err != nil {
		t.Fatalf("interpreters.Create: %v", err)
	}
	return it
}

// useDefault checks that the default runtime holds only main, and closes
// whatever the test leaves in it when it ends, all at once, so each test
// leaves the default runtime as it found it.
func useDefault(t *testing.T) {
	t.Helper()
	requireOnlyMain(t)
	t.Cleanup(func() {
		all, err := interpreters.ListAll()
		if err != nil {
			t.Errorf("ListAll: %v", err)
			return
		}
		var wg sync.WaitGroup
		for _, it := range all[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := it.Close(); err != nil && !errors.Is(err, interpreters.ErrInterpreterNotFound) {
					t.Errorf("closing %v: %v", it, err)
				}
			}()
		}
		wg.Wait()
	})
}

// closeAll closes interpreters concurrently.
func closeAll(t *testing.T, its ...*interpreters.Interpreter) {
	t.Helper()
	errs := make([]error, len(its))
	var wg sync.WaitGroup
	for i, it := range its {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = it.Close()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Close %v: %v", its[i], err)
		}
	}
}

// requireOnlyMain fails the test unless the default runtime lists nothing
// but its main interpreter.
func requireOnlyMain(t *testing.T) {
	t.Helper()
	all, err := interpreters.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	if len(all) != 1 || all[0] != interpreters.GetMain() {
		t.Fatalf("the default runtime should list only main before this test, got %v", all)
	}
}

func mustExec(t *testing.T, it *interpreters.Interpreter, src string) {
	t.Helper()
	if err := it.Exec(src); err != nil {
		t.Fatalf("%v.Exec(%q): %v", it, src, err)
	}
}

func mustCall(t *testing.T, it *interpreters.Interpreter, fn string, args ...any) any {
	t.Helper()
	res, err := it.Call(fn, args...)
	if err != nil {
		t.Fatalf("%v.Call(%q, %#v): %v", it, fn, args, err)
	}
	return res
}

// global reads a global of the interpreter back to the host.
func global(t *testing.T, it *interpreters.Interpreter, name string) any {
	t.Helper()
	return mustCall(t, it, "function() return "+name+" end")
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v (%T), want %#v (%T)", what, got, got, want, want)
	}
}

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one matching %v", what, target)
		return
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: error %q (%T) does not match %v", what, err, err, target)
	}
}

// wantNotFound checks an operation on a closed or dead interpreter.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, interpreters.ErrInterpreterNotFound)
	if err != nil && !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: %q should also match ErrInterpreter", what, err)
	}
}

// wantAlreadyRunning checks an operation refused because a call is in
// progress.
func wantAlreadyRunning(t *testing.T, it *interpreters.Interpreter, what string, err error) {
	t.Helper()
	wantErr(t, what, err, interpreters.ErrAlreadyRunning)
	if err == nil {
		return
	}
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: %q should also match ErrInterpreter", what, err)
	}
	if want := fmt.Sprintf("interpreter %d already running", it.ID()); !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error text %q should contain %q", what, err, want)
	}
}

// wantUnrecognized checks an operation the main interpreter refuses.
func wantUnrecognized(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, interpreters.ErrInterpreter)
	if err == nil {
		return
	}
	if !strings.Contains(err.Error(), "unrecognized") {
		t.Errorf("%s: error text %q should contain \"unrecognized\"", what, err)
	}
	if errors.Is(err, interpreters.ErrInterpreterNotFound) || errors.Is(err, interpreters.ErrAlreadyRunning) {
		t.Errorf("%s: %q should be a plain interpreter error, not not-found or already-running", what, err)
	}
}

// wantNotShareable checks a value refused at a tier: it matches
// ErrNotShareable and, as in CPython's class tree, not ErrInterpreter.
func wantNotShareable(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, interpreters.ErrNotShareable)
	if err != nil && errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: %q should not match ErrInterpreter", what, err)
	}
}

// wantInvalid checks a malformed argument: ErrInvalidArgument, not
// ErrInterpreter.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	wantErr(t, what, err, interpreters.ErrInvalidArgument)
	if err != nil && errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: %q should not match ErrInterpreter", what, err)
	}
}

// execFailed returns err as *ExecutionFailed or fails the test.
func execFailed(t *testing.T, what string, err error) *interpreters.ExecutionFailed {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want *ExecutionFailed", what)
	}
	var ef *interpreters.ExecutionFailed
	if !errors.As(err, &ef) {
		t.Fatalf("%s: error %q is a %T, want *ExecutionFailed", what, err, err)
	}
	if !errors.Is(err, interpreters.ErrInterpreter) {
		t.Errorf("%s: *ExecutionFailed %q should match ErrInterpreter", what, err)
	}
	return ef
}

// async is an operation running in its own goroutine.
type async struct {
	done chan struct{}
	res  any
	err  error
}

func start(f func() (any, error)) *async {
	a := &async{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.res, a.err = f()
	}()
	return a
}

func startExec(ctx context.Context, it *interpreters.Interpreter, src string) *async {
	return start(func() (any, error) { return nil, it.ExecContext(ctx, src) })
}

// finished reports whether the operation has returned.
func (a *async) finished() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// wait returns the operation's result, failing the test if it has not
// returned within bounded.
func (a *async) wait(t *testing.T) (any, error) {
	t.Helper()
	select {
	case <-a.done:
		return a.res, a.err
	case <-time.After(bounded):
		t.Fatalf("the operation did not return within %v", bounded)
		return nil, nil
	}
}

// waitThread is Thread.Wait bounded by bounded.
func waitThread(t *testing.T, th *interpreters.Thread) (any, error) {
	t.Helper()
	select {
	case <-th.Done():
	case <-time.After(bounded):
		t.Fatalf("CallInThread's call did not return within %v", bounded)
	}
	return th.Wait()
}

// waitRunning polls until the interpreter reports a call in progress. It
// fails the test if done closes first (the call ended before it was seen
// running) or after bounded.
func waitRunning(t *testing.T, it *interpreters.Interpreter, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		running, err := it.IsRunning()
		if err != nil {
			t.Fatalf("%v.IsRunning: %v", it, err)
		}
		if running {
			return
		}
		select {
		case <-done:
			t.Fatalf("%v: the call returned before the interpreter was seen running", it)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v was not seen running within %v", it, bounded)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantRunning(t *testing.T, it *interpreters.Interpreter, want bool) {
	t.Helper()
	got, err := it.IsRunning()
	if err != nil {
		t.Fatalf("%v.IsRunning: %v", it, err)
	}
	if got != want {
		t.Errorf("%v.IsRunning() = %v, want %v", it, got, want)
	}
}

func pid(t *testing.T, it *interpreters.Interpreter) int {
	t.Helper()
	p, err := it.Pid()
	if err != nil {
		t.Fatalf("%v.Pid: %v", it, err)
	}
	return p
}

// alive reports whether a process with this pid exists (a zombie counts).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// waitGone polls until no process has this pid (reaped, not just dead),
// failing the test after a bounded wait.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("worker process %d still exists (kill(pid, 0) = %v)", pid, err)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of an
// interpreter's output and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// ids returns the IDs of a list of interpreters.
func ids(all []*interpreters.Interpreter) []int64 {
	out := make([]int64, len(all))
	for i, it := range all {
		out[i] = it.ID()
	}
	return out
}

func listAll(t *testing.T, rt *interpreters.Runtime) []*interpreters.Interpreter {
	t.Helper()
	all, err := rt.ListAll()
	if err != nil {
		t.Fatalf("ListAll: %v", err)
	}
	return all
}

// wantList checks ListAll's exact content: the same pointers, in order.
func wantList(t *testing.T, what string, got []*interpreters.Interpreter, want ...*interpreters.Interpreter) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: ListAll = %v, want %v", what, got, want)
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: ListAll = %v, want %v (element %d is not the same *Interpreter)", what, got, want, i)
			return
		}
	}
}

func contains(all []*interpreters.Interpreter, it *interpreters.Interpreter) bool {
	for _, x := range all {
		if x == it {
			return true
		}
	}
	return false
}

// closeAtCleanup closes rt when the test ends, and returns a close the
// test may call earlier; rt closes once either way.
func closeAtCleanup(t *testing.T, rt *interpreters.Runtime) (closeRT func()) {
	var once sync.Once
	closeRT = func() {
		once.Do(func() {
			if err := rt.Close(); err != nil {
				t.Errorf("Runtime.Close: %v", err)
			}
		})
	}
	t.Cleanup(closeRT)
	return closeRT
}

// newQueue creates an unbounded queue in rt.
func newQueue(t *testing.T, rt *interpreters.Runtime) *interpreters.Queue {
	t.Helper()
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	return q
}

// waitQueueWaiters polls until n gets and puts are blocked on q (its
// Waiting, as DescribeQueues reports it), failing the test after bounded:
// what a test waits for before acting on a blocked get or put.
func waitQueueWaiters(t *testing.T, rt *interpreters.Runtime, q *interpreters.Queue, n int) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		qs, err := rt.DescribeQueues(t.Context())
		if err != nil {
			t.Fatalf("DescribeQueues: %v", err)
		}
		got := -1
		for _, info := range qs {
			if info.ID == q.ID() {
				got = info.Waiting
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %d waiting after %v, want %d", q, got, bounded, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueueSize polls until q holds at least n items, failing the test
// after bounded.
func waitQueueSize(t *testing.T, q *interpreters.Queue, n int) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		got, err := q.QSize()
		if err != nil {
			t.Fatalf("%v.QSize: %v", q, err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v holds %d items after %v, want at least %d", q, got, bounded, n)
		}
		time.Sleep(time.Millisecond)
	}
}
