package cluster

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestPlacementCountsEachCreateOnce: a heartbeat that counts a create
// before the client has heard back from the node, and the client's own
// count of that create, make one interpreter, not two.
func TestPlacementCountsEachCreateOnce(t *testing.T) {
	c := &Client{nodes: map[string]*nodeState{}, lost: map[string]bool{}, heard: make(chan struct{})}
	beat := func(name string, interpreters int, last int64) {
		b, err := msgpack.Marshal(&Status{Name: name, Instance: name, Interpreters: interpreters, LastID: last})
		if err != nil {
			t.Fatal(err)
		}
		c.status(b)
	}
	beat("a", 0, 0)
	beat("b", 0, 0)
	if got := c.PlaceLeastLoaded(); got != "a" {
		t.Fatalf("first placement on %q, want a", got)
	}
	beat("a", 1, 1) // the heartbeat counts the new interpreter first
	c.Landed("a", 1)
	if got := c.PlaceLeastLoaded(); got != "b" {
		t.Fatalf("second placement on %q, want b: a holds one interpreter, b none", got)
	}
	c.Landed("b", 1025)
	if got := c.PlaceLeastLoaded(); got != "a" {
		t.Fatalf("third placement on %q, want a: one each, a first by name", got)
	}
}
