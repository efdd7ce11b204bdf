package interpreters

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subinterp/subinterp/daemon"
)

// dialTestDaemon serves a daemon in-process on a socket of its own and
// dials it; both are closed when the test ends.
func dialTestDaemon(t *testing.T, opts ...Option) *Runtime {
	t.Helper()
	dir, err := os.MkdirTemp("", "rh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv, err := daemon.Listen(daemon.Config{Socket: filepath.Join(dir, "d.sock")})
	if err != nil {
		t.Fatalf("daemon.Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("the daemon did not shut down")
		}
	})
	rt, err := Dial(t.Context(), srv.SocketPath(), opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// registeredFuncs is how many host functions rt's client keeps registered
// for its daemon.
func registeredFuncs(t *testing.T, rt *Runtime) int {
	t.Helper()
	b, err := rt.backend()
	if err != nil {
		t.Fatal(err)
	}
	return b.(*remoteBackend).host.registered()
}

// TestRemoteHostFuncsReleased: the functions a Create brings over Dial are
// forgotten once no interpreter holds them, so creating and closing
// interpreters with functions of their own does not grow the client's
// registry; the runtime's own functions stay registered throughout.
func TestRemoteHostFuncsReleased(t *testing.T) {
	one := func(context.Context, ...any) (any, error) { return 1, nil }
	rt := dialTestDaemon(t, WithFunc("shared", one))
	first, err := rt.Create()
	if err != nil {
		t.Fatal(err)
	}
	base := registeredFuncs(t, rt)
	if base != 1 {
		t.Fatalf("after a Create with the runtime's own function: %d registered, want 1", base)
	}
	for n := range 20 {
		interp, err := rt.Create(WithFunc("own", func(context.Context, ...any) (any, error) { return n, nil }))
		if err != nil {
			t.Fatal(err)
		}
		got, err := interp.Call(`function() local h = require("host") return h.own() + h.shared() end`)
		if err != nil {
			t.Fatalf("host call: %v", err)
		}
		if want := int64(n + 1); got != want {
			t.Fatalf("host call: got %v, want %d", got, want)
		}
		if err := interp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := registeredFuncs(t, rt); got != base {
		t.Errorf("after 20 interpreters with functions of their own were closed: %d registered, want %d", got, base)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := rt.Create()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Call(`function() return require("host").shared() end`); err != nil || got != int64(1) {
		t.Errorf("the runtime's own function after every interpreter holding it closed: %v, %v; want 1", got, err)
	}
	if got := registeredFuncs(t, rt); got != base {
		t.Errorf("after a Create with the runtime's own functions again: %d registered, want %d", got, base)
	}
}

// TestRemoteHostFuncsHeldByChild: an interpreter a script created keeps
// its creator's functions after the creator is closed; they are forgotten
// when it closes too.
func TestRemoteHostFuncsHeldByChild(t *testing.T) {
	rt := dialTestDaemon(t)
	parent, err := rt.Create(WithFunc("seven", func(context.Context, ...any) (any, error) { return 7, nil }))
	if err != nil {
		t.Fatal(err)
	}
	id, err := parent.Call(`function() return require("interpreters").create().id end`)
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Close(); err != nil {
		t.Fatal(err)
	}
	child, err := rt.Lookup(id.(int64))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := child.Call(`function() return require("host").seven() end`); err != nil || got != int64(7) {
		t.Fatalf("the child's host call after its creator closed: %v, %v; want 7", got, err)
	}
	if got := registeredFuncs(t, rt); got != 1 {
		t.Errorf("while the child holds the function: %d registered, want 1", got)
	}
	if err := child.Close(); err != nil {
		t.Fatal(err)
	}
	if got := registeredFuncs(t, rt); got != 0 {
		t.Errorf("after the child closed: %d registered, want 0", got)
	}
}
