package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterQueuePipeline: items flow from the client through a queue,
// through stages on three nodes (two get-then-put loops each), through a
// second queue back to the client, while the third node's daemon, with
// the NATS server it embeds (one of the three that keep every queue's
// replicas), is SIGKILLed midway. Every item arrives but those the killed
// node's stages had taken: an item it forwarded before it died comes
// back as UNBOUND (its putter's node is lost), and it can hold one item
// per stage between a get and its put; no item arrives twice. `make
// test` runs 1,000 items; SUBINTERP_PIPELINE=1 (make pipeline) runs
// 100,000.
func TestClusterQueuePipeline(t *testing.T) {
	t.Parallel()
	items := 1000
	if os.Getenv("SUBINTERP_PIPELINE") == "1" {
		items = 100_000
	}
	bin := buildCLI(t)
	name := newClusterName()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var nodes []*testNode
	for i, n := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, node.Config{
			Name: n, Cluster: name, Embed: "127.0.0.1:-1", Replicas: 3,
			RouteListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes,
		}))
	}
	victim := startServe(t, bin, filepath.Join(socketDir(t), "c.sock"), "--node", "c", "--cluster", name,
		"--nats-embed", "127.0.0.1:-1", "--nats-cluster", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--nats-routes", strings.Join(routes, ","), "--nats-replicas", "3", "--nats-store", t.TempDir())
	rt := dialCluster(t, nodes[0].node.ClientURL(), []string{"a", "b", "c"}, interpreters.WithCluster(name))

	in, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	const stage = `function(qin, qout)
		local n = 0
		while true do
			local v = qin:get()
			if v == 0 then return n end
			qout:put(v)
			n = n + 1
		end
	end`
	var survivors []*interpreters.Thread
	var pids []int
	for _, n := range []string{"a", "a", "b", "b", "c", "c"} {
		it := create(t, rt, interpreters.WithNode(n))
		th := it.CallInThread(stage, in, out)
		if n == "c" {
			pid, err := it.Pid()
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		} else {
			survivors = append(survivors, th)
		}
	}

	// The client puts items 1..N from a few goroutines, and reads what
	// arrives.
	var (
		mu      sync.Mutex
		seen    = make(map[int64]int)
		unbound int
		arrived = make(chan struct{}, 1)
	)
	take := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		switch v := v.(type) {
		case int64:
			seen[v]++
		case interpreters.UnboundItem:
			unbound++
		default:
			t.Errorf("an item arrived as %T %v", v, v)
		}
		if len(seen)+unbound >= items/2 {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	reading := make(chan error, 1)
	go func() {
		for {
			v, err := out.GetContext(ctx)
			if err != nil {
				reading <- err
				return
			}
			take(v)
		}
	}()
	var putters sync.WaitGroup
	const producers = 8
	for p := range producers {
		putters.Add(1)
		go func() {
			defer putters.Done()
			for i := p + 1; i <= items; i += producers {
				if err := in.Put(int64(i)); err != nil {
					t.Errorf("Put %d: %v", i, err)
					return
				}
			}
		}()
	}

	select {
	case <-arrived:
	case <-time.After(10 * bounded):
		t.Fatal("half the items never arrived")
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	arrivedAtKill := len(seen) + unbound
	mu.Unlock()
	t.Logf("SIGKILLed node c with %d of %d items arrived", arrivedAtKill, items)
	putters.Wait()
	for range survivors {
		if err := in.Put(int64(0)); err != nil {
			t.Fatal(err)
		}
	}
	for _, th := range survivors {
		select {
		case <-th.Done():
		case <-time.After(10 * bounded):
			t.Fatal("a stage on a surviving node never finished")
		}
		if _, err := th.Wait(); err != nil {
			t.Fatalf("a stage on a surviving node: %v", err)
		}
	}
	// An item the killed node's stages were handed and never acknowledged
	// is handed out again after its acknowledgement wait, perhaps after
	// the stop items: the client takes what is left in the first queue.
	for {
		n, err := in.QSize()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		gctx, cancel := context.WithTimeout(context.Background(), bounded)
		v, err := in.GetContext(gctx)
		cancel()
		if err != nil {
			t.Fatalf("the item left in the first queue: %v\n%s", err, queueState(nodes[0].node.ClientURL(), name, in.ID()))
		}
		if v != int64(0) {
			take(v)
		}
	}
	// Every stage is done: what is left in the second queue is final. The
	// reader's last get may have had an item on its way when it gave up,
	// handed back a moment later, so the queue's size says what is left.
	stop()
	if err := <-reading; !errors.Is(err, interpreters.ErrQueueEmpty) {
		t.Errorf("the reader ended with %v", err)
	}
	for {
		n, err := out.QSize()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		gctx, cancel := context.WithTimeout(context.Background(), bounded)
		v, err := out.GetContext(gctx)
		cancel()
		if err != nil {
			t.Fatalf("the items left in the second queue: %v\n%s", err, queueState(nodes[0].node.ClientURL(), name, out.ID()))
		}
		take(v)
	}

	mu.Lock()
	defer mu.Unlock()
	missing, twice := 0, 0
	for i := 1; i <= items; i++ {
		switch seen[int64(i)] {
		case 0:
			missing++
		case 1:
		default:
			twice++
			t.Errorf("item %d arrived %d times", i, seen[int64(i)])
		}
	}
	t.Logf("%d items: %d arrived, %d as UNBOUND (forwarded by c before it died), %d missing, %d twice", items, len(seen), unbound, missing, twice)
	if len(seen) > items {
		t.Errorf("%d distinct items arrived, of %d put", len(seen), items)
	}
	if missing > unbound+2 {
		t.Errorf("%d items missing, more than the %d the killed node forwarded and the 2 its stages could hold", missing, unbound)
	}
	for _, pid := range pids {
		waitProcessGone(t, pid)
	}
}

// queueState describes queue id's stream and consumer as JetStream sees
// them, for a failure's message.
func queueState(url, cluster string, id int64) string {
	nc, err := nats.Connect(url)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, fmt.Sprintf("%s_q_%d", cluster, id))
	if err != nil {
		return err.Error()
	}
	si := st.CachedInfo()
	c, err := st.Consumer(ctx, "getters")
	if err != nil {
		return fmt.Sprintf("stream %+v; consumer: %v", si.State, err)
	}
	ci := c.CachedInfo()
	return fmt.Sprintf("stream %+v leader %v; consumer delivered %+v ackfloor %+v pending %d ackpending %d waiting %d redelivered %d leader %v",
		si.State, si.Cluster, ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.NumRedelivered, ci.Cluster)
}
