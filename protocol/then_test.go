package protocol_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// TestThenAfterTheAnswer: a *Then's Result is what the caller receives,
// and its After learns, once the write is done, whether it went out.
func TestThenAfterTheAnswer(t *testing.T) {
	t.Run("call channel", func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		server, client := protocol.NewCallConn(a), protocol.NewCallConn(b)
		sent := make(chan bool, 2)
		read := make(chan *protocol.Message, 1)
		go func() {
			m, err := client.Read()
			if err != nil {
				t.Error(err)
			}
			read <- m
		}()
		if err := server.Respond(7, nil, &protocol.Then{Result: "item", After: func(ok bool) { sent <- ok }}); err != nil {
			t.Fatal(err)
		}
		if ok := <-sent; !ok {
			t.Error("After(false) for an answer written")
		}
		if m := <-read; m.ID != 7 || string(m.Body) != "\xa4item" {
			t.Errorf("the client read %+v; want the Result", m)
		}
		a.Close()
		if err := server.Respond(8, nil, &protocol.Then{Result: "item", After: func(ok bool) { sent <- ok }}); err == nil {
			t.Fatal("Respond on a closed connection succeeded")
		}
		if ok := <-sent; ok {
			t.Error("After(true) for an answer that could not be written")
		}
	})
	t.Run("session", func(t *testing.T) {
		a, b := net.Pipe()
		sent := make(chan bool, 1)
		server := protocol.NewPeer(a, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"get": func(context.Context, []byte) (any, error) {
				return &protocol.Then{Result: "item", After: func(ok bool) { sent <- ok }}, nil
			},
		}})
		defer server.Close()
		client := protocol.NewPeer(b, protocol.PeerConfig{})
		defer client.Close()
		call, err := client.Go("get", nil)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-call.Done:
		case <-time.After(time.Minute):
			t.Fatal("no answer")
		}
		if call.Err != nil || string(call.Result) != "\xa4item" {
			t.Errorf("the answer = %q, %v; want the Result", call.Result, call.Err)
		}
		if ok := <-sent; !ok {
			t.Error("After(false) for an answer written")
		}
	})
}
