package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TestDiscoveryWaitsForNamedPeers: a client that has connected knows
// every node an answering node names as its peer, however late that
// node's own answer comes; with no peer named, discovery ends once its
// settling time is over.
func TestDiscoveryWaitsForNamedPeers(t *testing.T) {
	c := &Client{nodes: map[string]*nodeState{}, lost: map[string]bool{}, heard: make(chan struct{}), news: make(chan struct{}, 1)}
	answer := func(name string, peers ...string) {
		b, err := msgpack.Marshal(&Status{Name: name, Instance: name, Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		c.status(b)
	}
	done := make(chan error, 1)
	go func() { done <- c.discover(context.Background(), time.Hour, time.Millisecond) }()
	answer("a", "b")
	// Long past the settling time: a discovery that went by it alone
	// would be over.
	select {
	case err := <-done:
		t.Fatalf("discovery ended (%v) before b, whom a names, was heard", err)
	case <-time.After(100 * time.Millisecond):
	}
	answer("b", "a")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("discovery did not end once every named peer was heard")
	}
	if got := len(c.Nodes()); got != 2 {
		t.Errorf("the client knows %d nodes, want 2", got)
	}

	lone := &Client{nodes: map[string]*nodeState{}, lost: map[string]bool{}, heard: make(chan struct{}), news: make(chan struct{}, 1)}
	b, _ := msgpack.Marshal(&Status{Name: "a", Instance: "a"})
	lone.status(b)
	if err := lone.discover(context.Background(), time.Hour, time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
