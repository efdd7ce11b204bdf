package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/protocol"
)

// hang bounds only a real hang.
const hang = 60 * time.Second

// jetStream runs an in-process NATS server with JetStream and connects to it.
func jetStream(t testing.TB) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(hang) {
		t.Fatal("NATS server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newQueues(t testing.TB, nc *nats.Conn, replicas int) *cluster.Queues {
	t.Helper()
	qs, err := cluster.NewQueues(nc, "qt", replicas)
	if err != nil {
		t.Fatal(err)
	}
	return qs
}

func code(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func item(i int) cluster.QueueItem {
	return cluster.QueueItem{Data: []byte(fmt.Sprint(i)), Putter: 7, PutterNode: "n1", Unbound: protocol.UnboundError}
}

func TestQueuesFIFOAndMaxSize(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	qs := newQueues(t, jetStream(t), 1)
	if err := qs.Create(ctx, 1, cluster.QueueConfig{MaxSize: 3, Unbound: protocol.UnboundRemove}); err != nil {
		t.Fatal(err)
	}
	if _, err := qs.Get(ctx, 1, false); code(err) != protocol.CodeQueueEmpty {
		t.Fatalf("get from empty queue: %v, want queue_empty", err)
	}
	for i := range 3 {
		if err := qs.Put(ctx, 1, item(i), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := qs.Put(ctx, 1, item(3), false); code(err) != protocol.CodeQueueFull {
		t.Fatalf("put into full queue: %v, want queue_full", err)
	}
	c, n, err := qs.Info(ctx, 1)
	if err != nil || c.MaxSize != 3 || c.Unbound != protocol.UnboundRemove || n != 3 {
		t.Fatalf("info: %+v size %d, %v; want maxsize 3, remove, size 3", c, n, err)
	}
	for i := range 3 {
		it, err := qs.Get(ctx, 1, i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(it.Data) != fmt.Sprint(i) || it.Putter != 7 || it.PutterNode != "n1" || it.Unbound != protocol.UnboundError {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	if _, n, _ := qs.Info(ctx, 1); n != 0 {
		t.Fatalf("size after taking all: %d", n)
	}
	if err := qs.Delete(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := qs.Get(ctx, 1, false); code(err) != protocol.CodeQueueNotFound {
		t.Fatalf("get from deleted queue: %v, want queue_not_found", err)
	}
	if err := qs.Put(ctx, 1, item(0), false); code(err) != protocol.CodeQueueNotFound {
		t.Fatalf("put into deleted queue: %v, want queue_not_found", err)
	}
}

// A waiting get is answered by the put, and a waiting put by the get.
func TestQueuesBlockingHandOff(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	qs := newQueues(t, jetStream(t), 1)
	if err := qs.Create(ctx, 2, cluster.QueueConfig{MaxSize: 1, Unbound: protocol.UnboundReplace}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		it, err := qs.Get(ctx, 2, true)
		if err == nil && string(it.Data) != "0" {
			err = fmt.Errorf("got %q", it.Data)
		}
		got <- err
	}()
	if err := qs.Put(ctx, 2, item(0), true); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := qs.Put(ctx, 2, item(1), false); err != nil {
		t.Fatal(err)
	}
	put := make(chan error, 1)
	go func() { put <- qs.Put(ctx, 2, item(2), true) }()
	for want := 1; want <= 2; want++ {
		it, err := qs.Get(ctx, 2, true)
		if err != nil || string(it.Data) != fmt.Sprint(want) {
			t.Fatalf("get %d: %q, %v", want, it.Data, err)
		}
	}
	if err := <-put; err != nil {
		t.Fatal(err)
	}
}

// A context that ends fails a waiting get as empty and a waiting put as full.
func TestQueuesContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	qs := newQueues(t, jetStream(t), 1)
	if err := qs.Create(ctx, 3, cluster.QueueConfig{MaxSize: 1, Unbound: protocol.UnboundReplace}); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := qs.Get(short, 3, true)
	stop()
	if code(err) != protocol.CodeQueueEmpty {
		t.Fatalf("get on an ended context: %v, want queue_empty", err)
	}
	if err := qs.Put(ctx, 3, item(0), true); err != nil {
		t.Fatal(err)
	}
	short, stop = context.WithTimeout(ctx, 200*time.Millisecond)
	err = qs.Put(short, 3, item(1), true)
	stop()
	if code(err) != protocol.CodeQueueFull {
		t.Fatalf("put on an ended context: %v, want queue_full", err)
	}
	// The ended get took nothing: the one item is still first.
	if it, err := qs.Get(ctx, 3, true); err != nil || string(it.Data) != "0" {
		t.Fatalf("get after the ended calls: %q, %v", it.Data, err)
	}
}

// Competing getters each get distinct items, and every item is got.
func TestQueuesCompetingGetters(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	qs := newQueues(t, jetStream(t), 1)
	if err := qs.Create(ctx, 4, cluster.QueueConfig{Unbound: protocol.UnboundReplace}); err != nil {
		t.Fatal(err)
	}
	const items, getters = 200, 4
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, getters)
	for range getters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range items / getters {
				it, err := qs.Get(ctx, 4, true)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seen[string(it.Data)]++
				mu.Unlock()
			}
		}()
	}
	for i := range items {
		if err := qs.Put(ctx, 4, item(i), true); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range items {
		if seen[fmt.Sprint(i)] != 1 {
			t.Fatalf("item %d got %d times", i, seen[fmt.Sprint(i)])
		}
	}
}

// An item handed to a getter that dies before acknowledging it goes to
// the next getter: handed out twice, never dropped.
func TestQueuesItemOfDeadGetterGoesToNext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	nc := jetStream(t)
	qs := newQueues(t, nc, 1)
	queueOfTwo(t, ctx, qs, 5)
	// A getter on a connection of its own is handed item 0 and dies.
	dying, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(dying)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "qt_q_5", "getters")
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := cons.Next(jetstream.FetchContext(ctx)); err != nil || string(msg.Data()) != "0" {
		t.Fatalf("the dying getter's item: %v", err)
	}
	dying.Close()
	getAll(t, ctx, qs, 5, 2)
}

// A blocking get that gives up leaves its pull request with JetStream;
// the item that request brings goes to the next getter at once, not
// after the acknowledgement wait (itemAckWait, 10 s).
func TestQueuesEndedGetHandsItemBack(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	nc := jetStream(t)
	qs := newQueues(t, nc, 1)
	if err := qs.Create(ctx, 6, cluster.QueueConfig{Unbound: protocol.UnboundReplace}); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		gctx, stop := context.WithCancel(ctx)
		got := make(chan error, 1)
		go func() {
			_, err := qs.Get(gctx, 6, true)
			got <- err
		}()
		// Wait for the get's pull request to reach JetStream.
		for waiting := 0; waiting == 0; {
			cons, err := js.Consumer(ctx, "qt_q_6", "getters")
			if err != nil {
				t.Fatal(err)
			}
			waiting = cons.CachedInfo().NumWaiting
		}
		stop()
		if err := <-got; code(err) != protocol.CodeQueueEmpty {
			t.Fatalf("the ended get: %v, want queue_empty", err)
		}
		if err := qs.Put(ctx, 6, item(i), false); err != nil {
			t.Fatal(err)
		}
		soon, stopSoon := context.WithTimeout(ctx, 5*time.Second)
		it, err := qs.Get(soon, 6, true)
		stopSoon()
		if err != nil || string(it.Data) != fmt.Sprint(i) {
			t.Fatalf("get after an ended get: %q, %v", it.Data, err)
		}
	}
}

// With more than one replica a get claims its item; an item another get
// has claimed (as when a new consumer leader hands out again an item it
// never heard was delivered) is acknowledged and passed over, not handed
// out twice.
func TestQueuesClaimedItemPassedOver(t *testing.T) {
	ctx, servers := threeServers(t)
	nc := connect(t, servers[0])
	qs := newQueues(t, nc, 3)
	createWhenReady(t, qs, 7, cluster.QueueConfig{Unbound: protocol.UnboundReplace})
	for i := range 2 {
		if err := qs.Put(ctx, 7, item(i), false); err != nil {
			t.Fatal(err)
		}
	}
	// The first get makes the claims bucket.
	if it, err := qs.Get(ctx, 7, false); err != nil || string(it.Data) != "0" {
		t.Fatalf("first get: %q, %v", it.Data, err)
	}
	if err := qs.Put(ctx, 7, item(2), false); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "qt_q_7")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 2)
	if err != nil || string(m.Data) != "1" {
		t.Fatalf("item 1 in the stream: %v", err)
	}
	kv, err := js.KeyValue(ctx, "qt_claims")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, fmt.Sprintf("7.2.%d", m.Time.UnixNano()), []byte("another get")); err != nil {
		t.Fatal(err)
	}
	if it, err := qs.Get(ctx, 7, false); err != nil || string(it.Data) != "2" {
		t.Fatalf("get past the claimed item: %q, %v, want item 2", it.Data, err)
	}
	if _, n, err := qs.Info(ctx, 7); err != nil || n != 0 {
		t.Fatalf("queue after: %d items, %v; want 0", n, err)
	}
}
