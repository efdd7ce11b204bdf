package integration

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/subinterp/subinterp/interpreters"
)

// TestCreateOutOfDescriptors: when the host has no file descriptor left,
// Create fails with a *ResourceError naming them, matching ErrInterpreter,
// and the interpreter already running carries on; once descriptors are
// free again, Create works.
//
// Not parallel: it lowers this process's RLIMIT_NOFILE while it runs.
func TestCreateOutOfDescriptors(t *testing.T) {
	backgroundCloses.Wait() // earlier tests' closes release descriptors, not take them
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "x = 41")

	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("RLIMIT_NOFILE: %v", err)
	}
	// The lowest free descriptor becomes the limit: no new one can open.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatalf("open %s: %v", os.DevNull, err)
	}
	lowest := f.Fd()
	f.Close()
	low := unix.Rlimit{Cur: uint64(lowest), Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("lowering RLIMIT_NOFILE to %d: %v", lowest, err)
	}
	_, err = rt.Create()
	if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatalf("restoring RLIMIT_NOFILE: %v", rerr)
	}
	t.Logf("Create with no descriptor left: %v", err)
	wantErr(t, "Create with no descriptor left", err, interpreters.ErrInterpreter)
	var re *interpreters.ResourceError
	if !errors.As(err, &re) {
		t.Fatalf("Create with no descriptor left: %T %v, want a *ResourceError", err, err)
	}
	wantEqual(t, "the resource that ran out", re.Resource, "file descriptors")

	wantEqual(t, "the running interpreter's call", mustCall(t, it, "function() return x + 1 end"), int64(42))
	again := create(t, rt)
	wantEqual(t, "a Create once descriptors are free", mustCall(t, again, "function() return 7 end"), int64(7))
}
