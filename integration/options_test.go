package integration

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// TestOptionsInTheWrongPlace: an option given where it does not apply is
// ErrInvalidArgument naming it, never silently ignored, and the call
// starts nothing; the same option where it applies is fine.
func TestOptionsInTheWrongPlace(t *testing.T) {
	t.Parallel()
	wantMisplaced := func(t *testing.T, what, name string, err error) {
		t.Helper()
		wantInvalid(t, what, err)
		if err != nil && !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %q does not name %s", what, err, name)
		}
	}
	rt := newRuntime(t)
	for name, opt := range map[string]interpreters.Option{
		"WithWarmSpares":  interpreters.WithWarmSpares(1),
		"WithToken":       interpreters.WithToken("t"),
		"WithTLS":         interpreters.WithTLS(&tls.Config{}),
		"WithCredentials": interpreters.WithCredentials("creds"),
		"WithCluster":     interpreters.WithCluster("c"),
	} {
		_, err := rt.Create(opt)
		wantMisplaced(t, "Create("+name+")", name, err)
	}
	wantList(t, "ListAll after the refused Creates", listAll(t, rt), rt.GetMain())

	for name, opt := range map[string]interpreters.Option{
		"WithToken":        interpreters.WithToken("t"),
		"WithTLS":          interpreters.WithTLS(&tls.Config{}),
		"WithNode":         interpreters.WithNode("n"),
		"WithPlacementKey": interpreters.WithPlacementKey("k"),
	} {
		bad := interpreters.New(opt)
		_, err := bad.Create()
		wantMisplaced(t, "Create on New("+name+")", name, err)
		if err := bad.Close(); err != nil {
			t.Errorf("Close of New(%s): %v", name, err)
		}
	}

	d := startDaemon(t, daemon.Config{})
	for name, opt := range map[string]interpreters.Option{
		"WithWarmSpares":   interpreters.WithWarmSpares(1),
		"WithNode":         interpreters.WithNode("n"),
		"WithPlacementKey": interpreters.WithPlacementKey("k"),
	} {
		ctx, cancel := context.WithTimeout(t.Context(), bounded)
		rt, err := interpreters.Dial(ctx, d.SocketPath(), opt)
		cancel()
		if err == nil {
			rt.Close()
		}
		wantMisplaced(t, "Dial("+name+")", name, err)
	}

	// Where they apply they are taken.
	spared := newRuntime(t, interpreters.WithWarmSpares(1), interpreters.WithStdlib())
	it := create(t, spared, interpreters.WithCPULimit(0))
	wantEqual(t, "a global of the standard library", mustCall(t, it, "function() return type(io) end"), "table")
	d.dial(t, interpreters.WithStdlib())
}
