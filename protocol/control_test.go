package protocol_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/protocol"
)

// TestHelloExchange: ClientHello and ReadHello/AnswerHello agree on the
// frames, and a refusal reaches the client as the daemon's *Error.
func TestHelloExchange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse *protocol.Error
	}{
		{"accepted", nil},
		{"refused", protocol.VersionMismatch(7, protocol.Version)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			got := make(chan protocol.HelloParams, 1)
			go func() {
				p, id, err := protocol.ReadHello(server)
				if err != nil {
					t.Errorf("ReadHello: %v", err)
					return
				}
				got <- p
				_ = protocol.AnswerHello(server, id, protocol.HelloResult{Version: protocol.Version, Pid: 42}, tc.refuse)
			}()
			res, err := protocol.ClientHello(client, protocol.HelloParams{Version: 7, Token: "t"})
			if p := <-got; p.Version != 7 || p.Token != "t" {
				t.Errorf("the daemon read %+v", p)
			}
			if tc.refuse == nil {
				if err != nil || res.Pid != 42 || res.Version != protocol.Version {
					t.Errorf("ClientHello = %+v, %v", res, err)
				}
				return
			}
			var e *protocol.Error
			if !errors.As(err, &e) || e.Code != protocol.CodeVersion {
				t.Fatalf("ClientHello = %v, want the refusal", err)
			}
			if !strings.Contains(e.Msg, "version 7") || !strings.Contains(e.Msg, fmt.Sprintf("version %d", protocol.Version)) {
				t.Errorf("mismatch message %q should name both versions", e.Msg)
			}
		})
	}
}

// TestReadHelloWantsHello: any other first request is a protocol error
// that still carries its id, so it can be answered.
func TestReadHelloWantsHello(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	frame, err := protocol.AppendMessage(nil, &protocol.Message{Kind: protocol.KindRequest, ID: 9, Method: protocol.ControlList, Body: []byte{0xc0}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = client.Write(frame) }()
	_, id, err := protocol.ReadHello(server)
	var e *protocol.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeProtocol || id != 9 {
		t.Errorf("ReadHello of a list request = id %d, %v; want a protocol error for id 9", id, err)
	}
}
