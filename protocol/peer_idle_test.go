package protocol_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// TestPeerIdle: Idle closes only once every request served has been
// answered, so a server can close the session without losing an answer.
func TestPeerIdle(t *testing.T) {
	a, b := net.Pipe()
	release := make(chan struct{})
	server := protocol.NewPeer(a, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
		"slow": func(context.Context, []byte) (any, error) {
			<-release
			return "done", nil
		},
	}})
	defer server.Close()
	client := protocol.NewPeer(b, protocol.PeerConfig{})
	defer client.Close()

	select {
	case <-server.Idle():
	default:
		t.Fatal("Idle of a peer serving nothing is not closed")
	}
	call, err := client.Go("slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var idle <-chan struct{}
	for {
		idle = server.Idle()
		select {
		case <-idle:
			if time.Now().After(deadline) {
				t.Fatal("the request never reached the server")
			}
			time.Sleep(time.Millisecond)
			continue
		default:
		}
		break
	}
	close(release)
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("Idle did not close after the answer")
	}
	_ = server.Close() // the answer was written before Idle closed
	<-call.Done
	if call.Err != nil || string(call.Result) != "\xa4done" {
		t.Errorf("the answer = %q, %v", call.Result, call.Err)
	}
}
