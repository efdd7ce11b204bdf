package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

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
	var getErrs []error // guarded by mu
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
					// Only the getter on the lost server, or the end,
					// may stop a getter: a failover is waited out.
					if g != lost && gctx.Err() == nil {
						mu.Lock()
						getErrs = append(getErrs, fmt.Errorf("getter %d: %w", g, err))
						mu.Unlock()
					}
					return
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
	lostAt := time.Now()
	t.Logf("server %d, the stream's leader, shut down", lost)
	// stalled says where the queue stood when the test gave up, so a
	// failure tells a stuck consumer from a stuck stream.
	stalled := func() string {
		mu.Lock()
		n, gerrs := total, slices.Clone(getErrs)
		mu.Unlock()
		if len(gerrs) > 0 {
			return fmt.Sprintf("%d got; getters stopped: %v", n, gerrs)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		js, err := jetstream.New(connect(t, survivor))
		if err != nil {
			return err.Error()
		}
		si, err := js.Stream(sctx, "qt_q_1")
		if err != nil {
			return fmt.Sprintf("%d got %v after the loss; stream: %v", n, time.Since(lostAt), err)
		}
		ci, err := js.Consumer(sctx, "qt_q_1", "getters")
		if err != nil {
			return fmt.Sprintf("%d got %v after the loss; stream %+v; consumer: %v", n, time.Since(lostAt), si.CachedInfo().State, err)
		}
		c := ci.CachedInfo()
		return fmt.Sprintf("%d got %v after the loss; stream leader %q msgs %d; consumer leader %q ack pending %d waiting %d pending %d redelivered %d",
			n, time.Since(lostAt), si.CachedInfo().Cluster.Leader, si.CachedInfo().State.Msgs,
			c.Cluster.Leader, c.NumAckPending, c.NumWaiting, c.NumPending, c.NumRedelivered)
	}
	if err := <-putDone; err != nil {
		t.Fatalf("%v (%s)", err, stalled())
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
			t.Fatalf("%d of %d items got (%s)", n, items, stalled())
		}
	}
	stopGetters()
	getters.Wait()
	for _, err := range getErrs {
		t.Error(err)
	}
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
