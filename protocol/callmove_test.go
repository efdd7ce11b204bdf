package protocol_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// TestCallMoveRescue: when the call ends while a host function runs on the
// moved reading, Run answers that host call with the end's error and reads
// on on the caller's goroutine; the function's result is then not wanted,
// and a later host call is refused without running.
func TestCallMoveRescue(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	caller, peer := protocol.NewCallConn(a), protocol.NewCallConn(b)
	end, cancel := context.WithCancel(context.Background())
	mv := protocol.NewCallMove(end)

	running, release, wanted := make(chan struct{}), make(chan struct{}), make(chan bool, 1)
	read := func() ([]byte, error) { // the reading goroutine, in host call 7
		if err := mv.Begin(7); err != nil {
			t.Errorf("Begin before the end: %v", err)
		}
		close(running)
		<-release // a function ignoring its context
		ok := mv.Returned()
		wanted <- ok
		if !ok {
			return nil, protocol.ErrMoved
		}
		return []byte("the reading goroutine"), nil
	}
	readOn := func() ([]byte, error) { return []byte("read on"), nil }

	got := make(chan []byte, 1)
	go func() {
		res, err := mv.Run(caller, read, readOn)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		got <- res
	}()
	<-running
	cancel()
	m, err := peer.Read()
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != protocol.KindResponse || m.ID != 7 || m.Error == nil || m.Error.Code != protocol.CodeCanceled {
		t.Fatalf("the host call's answer: %+v, want a response to 7 with the cancellation", m)
	}
	select {
	case res := <-got:
		if string(res) != "read on" {
			t.Errorf("Run returned %q, want what the caller read on", res)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after the rescue")
	}
	close(release)
	if <-wanted {
		t.Error("the late function's result is still wanted")
	}
	if err := mv.Begin(8); err == nil || err.Code != protocol.CodeCanceled {
		t.Errorf("Begin after the end: %v, want the cancellation", err)
	}
}

// TestCallMoveFinishes: a call whose reading finishes before its end
// returns what the reading goroutine read.
func TestCallMoveFinishes(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	mv := protocol.NewCallMove(context.Background())
	res, err := mv.Run(protocol.NewCallConn(a),
		func() ([]byte, error) {
			if err := mv.Begin(1); err != nil {
				return nil, err
			}
			if !mv.Returned() {
				t.Error("a result nothing ended is not wanted")
			}
			return []byte("done"), nil
		},
		func() ([]byte, error) { t.Error("read on without an end"); return nil, nil })
	if err != nil || string(res) != "done" {
		t.Errorf("Run: %q, %v; want done", res, err)
	}
}
