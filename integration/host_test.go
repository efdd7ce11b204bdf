package integration

import (
	"context"
	"testing"
	"time"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// TestHostFuncClientGone: a function given over Dial runs in its client;
// once that client is gone, calling it raises HostError, and the
// interpreter lives on for other clients, even when the client goes in the
// middle of the call.
func TestHostFuncClientGone(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	entered, release := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(release) })
	giver := d.dial(t,
		interpreters.WithFunc("here", func(context.Context, ...any) (any, error) { return "from the giver", nil }),
		interpreters.WithFunc("stuck", func(context.Context, ...any) (any, error) {
			entered <- struct{}{}
			<-release
			return nil, nil
		}),
	)
	it := create(t, giver)
	wantEqual(t, "the giver's function", mustCall(t, it, `function() return require("host").here() end`), "from the giver")

	other := d.dial(t)
	same, err := other.Lookup(it.ID())
	if err != nil {
		t.Fatalf("Lookup from another client: %v", err)
	}
	wantEqual(t, "the giver's function called from another client's call",
		mustCall(t, same, `function() return require("host").here() end`), "from the giver")

	call := start(func() (any, error) {
		return same.Call(`function() return (` + catchHost + `)(require("host").stuck) end`)
	})
	select {
	case <-entered:
	case <-time.After(bounded):
		t.Fatal("the stuck function was not called")
	}
	giver.Close()
	got, err := call.wait(t)
	if err != nil {
		t.Fatalf("the call whose host function's client went away: %v", err)
	}
	if tu, _ := got.(interpreters.Tuple); len(tu) != 3 || tu[0] != "HostError" {
		t.Errorf("in flight when its client went: %#v, want a HostError", got)
	}
	ef := execFailed(t, "a function of a client that is gone", same.Exec(`require("host").here()`))
	wantEqual(t, "its type", ef.Type, "HostError")
	wantEqual(t, "the interpreter after it", mustCall(t, same, `function() return 3 end`), int64(3))
}

// TestHostOptionsInvalid: a bad name given to New surfaces at Create, one
// given to Dial at Dial.
func TestHostOptionsInvalid(t *testing.T) {
	t.Parallel()
	fn := func(context.Context, ...any) (any, error) { return nil, nil }
	_, err := newRuntime(t, interpreters.WithFunc("not a name", fn)).Create()
	wantInvalid(t, "Create on New(WithFunc(bad name))", err)
	_, err = newRuntime(t, interpreters.WithModule("a/b", "return 1")).Create()
	wantInvalid(t, "Create on New(WithModule(bad name))", err)
	d := startDaemon(t, daemon.Config{})
	_, err = interpreters.Dial(t.Context(), d.SocketPath(), interpreters.WithFunc("", fn))
	wantInvalid(t, "Dial(WithFunc(\"\"))", err)
}
