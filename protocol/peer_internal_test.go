package protocol

import (
	"context"
	"net"
	"testing"
	"time"
)

// A flood of requests is refused past maxInflight instead of growing one
// goroutine per request without bound; the refused request is answered at
// once and the admitted ones still complete.
func TestPeerBoundsRequestsInFlight(t *testing.T) {
	conn, raw := net.Pipe()
	release := make(chan struct{})
	p := NewPeer(conn, PeerConfig{Handlers: map[string]Handler{
		"block": func(ctx context.Context, _ []byte) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		},
	}})
	defer p.Close()
	defer raw.Close()

	go func() {
		var frames []byte
		for id := uint32(1); id <= maxInflight+1; id++ {
			var err error
			frames, err = AppendMessage(frames, &Message{Kind: KindRequest, ID: id, Method: "block"})
			if err != nil {
				t.Error(err)
				return
			}
		}
		raw.Write(frames)
	}()

	read := func() *Message {
		t.Helper()
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		body, err := ReadFrame(raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := read()
	if m.ID != maxInflight+1 || m.Error == nil || m.Error.Code != CodeUnavailable {
		t.Fatalf("first answer: id %d error %+v; want id %d refused with %q", m.ID, m.Error, maxInflight+1, CodeUnavailable)
	}
	close(release)
	seen := make(map[uint32]bool)
	for range maxInflight {
		m := read()
		if m.Error != nil || m.ID < 1 || m.ID > maxInflight || seen[m.ID] {
			t.Fatalf("answer id %d error %+v", m.ID, m.Error)
		}
		seen[m.ID] = true
	}
}
