package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/protocol"
)

// queueOfTwo makes queue id in qs and puts items 0 and 1 into it.
func queueOfTwo(t *testing.T, ctx context.Context, qs *cluster.Queues, id int64) {
	t.Helper()
	createWhenReady(t, qs, id, cluster.QueueConfig{Unbound: protocol.UnboundReplace})
	for i := range 2 {
		if err := qs.Put(ctx, id, item(i), false); err != nil {
			t.Fatal(err)
		}
	}
}

// takeAndDie takes the head item of queue id as a node does for one of
// its interpreters, over a connection of its own to url, and dies with
// the item not yet handed on.
func takeAndDie(t *testing.T, ctx context.Context, url string, replicas int, id int64, want string) {
	t.Helper()
	dying, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer dying.Close()
	it, _, err := newQueues(t, dying, replicas).Take(ctx, id, false)
	if err != nil || string(it.Data) != want {
		t.Fatalf("the dying node's take: %q, %v; want %q", it.Data, err, want)
	}
}

// getAll gets n items of queue id, waiting for each, and fails unless
// they are 0..n-1 in order.
func getAll(t *testing.T, ctx context.Context, qs *cluster.Queues, id int64, n int) {
	t.Helper()
	for want := range n {
		it, err := qs.Get(ctx, id, true)
		if err != nil || string(it.Data) != fmt.Sprint(want) {
			t.Fatalf("get %d: %q, %v", want, it.Data, err)
		}
	}
}

func TestQueuesTakeOfLostNodeGoesToNext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	nc := jetStream(t)
	qs := newQueues(t, nc, 1)
	queueOfTwo(t, ctx, qs, 8)
	takeAndDie(t, ctx, nc.ConnectedUrl(), 1, 8, "0")
	getAll(t, ctx, qs, 8, 2)
}

func TestQueuesTakeOfLostNodeGoesToNextAcrossServers(t *testing.T) {
	ctx, servers := threeServers(t)
	qs := newQueues(t, connect(t, servers[1]), 3)
	queueOfTwo(t, ctx, qs, 8)
	// The claim stays, naming a process nobody answers for: the next
	// getter takes it over when JetStream hands the item out again.
	takeAndDie(t, ctx, servers[0].ClientURL(), 3, 8, "0")
	getAll(t, ctx, qs, 8, 2)
}

// takeOnNode starts a test on three servers (threeServers), makes queue
// id holding items 0 and 1, and takes item 0 as a node on the first does;
// it returns the test's context, a getter on the second, and the node's
// settle.
func takeOnNode(t *testing.T, id int64) (context.Context, *cluster.Queues, func(bool)) {
	t.Helper()
	ctx, servers := threeServers(t)
	qs := newQueues(t, connect(t, servers[1]), 3)
	queueOfTwo(t, ctx, qs, id)
	it, settle, err := newQueues(t, connect(t, servers[0]), 3).Take(ctx, id, false)
	if err != nil || string(it.Data) != "0" {
		t.Fatalf("the node's take: %q, %v", it.Data, err)
	}
	return ctx, qs, settle
}

func TestQueuesTakeOfLiveNodeIsNotHandedTwice(t *testing.T) {
	// The node holds item 0 past its acknowledgement wait, as a failover
	// can make it seem unacknowledged: JetStream hands it out again, and
	// the next getter, asking the node, passes it over.
	ctx, qs, settle := takeOnNode(t, 9)
	got, err := qs.Get(ctx, 9, true)
	if err != nil || string(got.Data) != "1" {
		t.Fatalf("get beside the node's take: %q, %v; want item 1", got.Data, err)
	}
	settle(true)
	if _, n, err := qs.Info(ctx, 9); err != nil || n != 0 {
		t.Fatalf("queue after: %d items, %v; want 0", n, err)
	}
}

func TestQueuesTakeGivenBackGoesToNext(t *testing.T) {
	ctx, qs, settle := takeOnNode(t, 10)
	// Its interpreter's call ended before the item reached it: the item
	// goes to the next getter at once, not after the acknowledgement wait.
	settle(false)
	soon, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	getAll(t, soon, qs, 10, 2)
}
