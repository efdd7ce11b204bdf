package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/protocol"
)

// A three-replica queue keeps every item through the loss of the server
// leading its stream (shut down in-process, so its clients' connections
// drop at once), with a getter connected to that server: every item put
// is got, and an item is got twice only if one of the copies went to the
// getter on the lost server.
func TestQueuesServerLost(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS servers")
	}
	t.Parallel()
	const items = 400
	servers := startJetStreamCluster(t)
	admin := newQueues(t, connect(t, servers[0]), 3)
	createWhenReady(t, admin, 1, cluster.QueueConfig{MaxSize: 100, Unbound: protocol.UnboundReplace})
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()

	js, err := jetstream.New(connect(t, servers[0]))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "qt_q_1")
	if err != nil {
		t.Fatal(err)
	}
	lost := -1
	for i, ns := range servers {
		if ns.Name() == st.CachedInfo().Cluster.Leader {
			lost = i
		}
	}
	if lost < 0 {
		t.Fatalf("no server leads the stream (%q)", st.CachedInfo().Cluster.Leader)
	}
	survivor := servers[(lost+1)%3]

	var mu sync.Mutex
	got := map[string][]int{} // item → the getters that got it
	total := 0
	half := make(chan struct{})
	progress := make(chan struct{}, 1)
	var getters sync.WaitGroup
	gctx, stopGetters := context.WithCancel(ctx)
	for g, ns := range servers {
		qs := newQueues(t, connect(t, ns), 3)
		getters.Add(1)
		go func() {
			defer getters.Done()
			for {
				it, err := qs.Get(gctx, 1, true)
				if err != nil {
					return // the getter on the lost server, or the end
				}
				mu.Lock()
				got[string(it.Data)] = append(got[string(it.Data)], g)
				total++
				if total == items/2 {
					close(half)
				}
				mu.Unlock()
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}()
	}
	put := newQueues(t, connect(t, survivor), 3)
	putDone := make(chan error, 1)
	go func() {
		for i := range items {
			if err := put.Put(ctx, 1, cluster.QueueItem{Data: []byte(strconv.Itoa(i))}, true); err != nil {
				putDone <- fmt.Errorf("put %d: %v", i, err)
				return
			}
		}
		putDone <- nil
	}()
	select {
	case <-half:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("half the items never arrived: %d", total)
	}
	servers[lost].Shutdown()
	t.Logf("server %d, the stream's leader, shut down", lost)
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}
	// Wait for every item to be got, then stop the getters.
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == items {
			break
		}
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatalf("%d of %d items got", n, items)
		}
	}
	stopGetters()
	getters.Wait()
	for i := range items {
		by := got[strconv.Itoa(i)]
		if len(by) == 0 {
			t.Fatalf("item %d lost", i)
		}
		if len(by) > 1 && !slices.Contains(by, lost) {
			t.Fatalf("item %d got by getters %v, none on the lost server %d", i, by, lost)
		}
	}
}
