package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// bound is the longest any wait here may take before the test fails.
const bound = 30 * time.Second

// TestGoneClientReleased: a client that ends without a goodbye has its
// session released by the node, queue references and all, while a live
// client keeps its own. No worker is started: queues need none.
func TestGoneClientReleased(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(bound) {
		t.Fatal("NATS did not start")
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := ns.ClientURL()

	n, err := node.Join(node.Config{Name: "n", Cluster: "t", URL: url})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "gc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	d, err := daemon.Listen(daemon.Config{Socket: filepath.Join(dir, "d.sock"), Supervisor: supervisor.Config{NextID: n.NextID, Peers: n.Peers()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served, nodeServed := make(chan error, 1), make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	go func() { nodeServed <- n.Serve(ctx, d) }()
	defer func() {
		cancel()
		<-nodeServed
		<-served
		n.Close()
	}()

	connect := func() *cluster.Client {
		cctx, ccancel := context.WithTimeout(context.Background(), bound)
		defer ccancel()
		c, err := cluster.Connect(cctx, url, cluster.ClientConfig{Cluster: "t"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	request := func(c *cluster.Client, method string, params any) ([]byte, error) {
		rctx, rcancel := context.WithTimeout(context.Background(), bound)
		defer rcancel()
		return c.Request(rctx, "n", method, params)
	}
	newQueue := func(c *cluster.Client) int64 {
		b, err := request(c, protocol.ControlQueueCreate, &protocol.QueueCreateParams{Unbound: protocol.UnboundReplace})
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		if err := msgpack.Unmarshal(b, &id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	exists := func(c *cluster.Client, id int64) bool {
		_, err := request(c, protocol.ControlQueueInfo, &protocol.IDParams{ID: id})
		if err != nil && protocol.AsError(err).Code != protocol.CodeQueueNotFound {
			t.Fatal(err)
		}
		return err == nil
	}

	gone, live, watcher := connect(), connect(), connect()
	defer live.Close()
	defer watcher.Close()
	lost, kept := newQueue(gone), newQueue(live)
	if !exists(watcher, lost) || !exists(watcher, kept) {
		t.Fatal("the queues are not there to begin with")
	}
	cluster.CloseWithoutGoodbye(gone)
	deadline := time.Now().Add(bound)
	for exists(watcher, lost) {
		if time.Now().After(deadline) {
			t.Fatalf("the queue of a client gone without a goodbye is still there after %v", bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !exists(watcher, kept) {
		t.Error("the queue of a live client went with the gone one's")
	}
}
