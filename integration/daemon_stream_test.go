package integration

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
)

// TestDaemonStreamsIndependent: calls through one client travel on call
// streams of their own, so a blocked queue Get and a call that never
// returns on its own delay no other call of the same client, and
// cancelling one ends it alone.
func TestDaemonStreamsIndependent(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	rt := d.dial(t)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	get := start(func() (any, error) { return q.Get() })
	busy := create(t, rt)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loop := startExec(ctx, busy, "while true do end")
	waitRunning(t, busy, loop.done)

	other := create(t, rt)
	for i := range 20 {
		if got := mustCall(t, other, "function(x) return x * 2 end", i); got != int64(2*i) {
			t.Fatalf("call %d gave %v, want %d", i, got, 2*i)
		}
	}
	if get.finished() {
		t.Fatal("the Get returned from an empty queue")
	}

	cancel()
	_, err = loop.wait(t)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled loop ended with %v, want context.Canceled", err)
	}
	if running, err := busy.IsRunning(); err != nil || running {
		t.Errorf("after the cancelled call returned, IsRunning = %v, %v; want false", running, err)
	}
	if err := q.Put("x"); err != nil {
		t.Fatal(err)
	}
	if v, err := get.wait(t); err != nil || v != "x" {
		t.Errorf("the Get gave %v, %v; want x", v, err)
	}
}

// TestDaemonStreamAttach: a call stream attaches only to a live session
// with that session's key, and serves only the methods of a call stream.
func TestDaemonStreamAttach(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	session := rawConn(t, d.SocketPath())
	res, err := protocol.ClientHello(session, protocol.HelloParams{Version: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	if res.Session == 0 || len(res.Key) == 0 {
		t.Fatalf("the session's hello answer has no session (%d) or key (%x)", res.Session, res.Key)
	}
	wrongKey := append([]byte(nil), res.Key...)
	wrongKey[0] ^= 1
	for _, tc := range []struct {
		name string
		a    protocol.StreamAttach
	}{
		{"a wrong key", protocol.StreamAttach{Session: res.Session, Key: wrongKey}},
		{"no key", protocol.StreamAttach{Session: res.Session}},
		{"an unknown session", protocol.StreamAttach{Session: res.Session + 1000, Key: res.Key}},
	} {
		c := rawConn(t, d.SocketPath())
		_, err := protocol.ClientHello(c, protocol.HelloParams{Version: protocol.Version, Attach: &tc.a})
		var e *protocol.Error
		if !errors.As(err, &e) || e.Code != protocol.CodePermissionDenied {
			t.Errorf("attaching with %s: %v, want a %s refusal", tc.name, err, protocol.CodePermissionDenied)
		}
		wantClosed(t, c)
	}

	c := rawConn(t, d.SocketPath())
	sres, err := protocol.ClientHello(c, protocol.HelloParams{Version: protocol.Version, Attach: &protocol.StreamAttach{Session: res.Session, Key: res.Key}})
	if err != nil || sres.Stream == 0 {
		t.Fatalf("attaching with the session's key: stream %d, %v", sres.Stream, err)
	}
	cc := protocol.NewCallConn(c)
	if err := cc.Request(1, protocol.ControlList, &protocol.ListParams{}); err != nil {
		t.Fatal(err)
	}
	m, err := cc.Read()
	if err != nil || m.ID != 1 || m.Error == nil || m.Error.Code != protocol.CodeProtocol {
		t.Errorf("a listing on a call stream: %+v, %v; want a %s error", m, err, protocol.CodeProtocol)
	}

	// The session's end ends its streams.
	session.Close()
	if _, err := cc.Read(); err == nil {
		t.Error("a call stream outlived its session")
	}
}

// TestDaemonStreamsNeedTheSession: calls of a runtime whose session is
// lost fail as unavailable rather than opening new streams.
func TestDaemonStreamsNeedTheSession(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	rt := d.dial(t)
	it := create(t, rt)
	mustCall(t, it, "tostring", 1)
	d.stop(t)
	_, err := it.Call("tostring", 1)
	wantErr(t, "a call after the daemon stopped", err, interpreters.ErrUnavailable)
	if err != nil && !strings.Contains(err.Error(), "daemon") {
		t.Errorf("%q does not say the daemon is gone", err)
	}
}
