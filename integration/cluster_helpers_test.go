package integration

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/supervisor"
)

// startNATS runs a plain NATS server with JetStream on 127.0.0.1, on a
// port of its own, until the test ends: the deployment nodes join. set,
// when given, adds to its options.
func startNATS(t *testing.T, set ...func(*server.Options)) string {
	t.Helper()
	o := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, MaxPayload: 64 << 20,
	}
	for _, f := range set {
		f(o)
	}
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(bounded) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns.ClientURL()
}

// startJoinedCluster starts three daemons named a, b and c as one
// cluster: a embeds the NATS server, b and c join it. It returns the
// nodes and the server's client URL.
func startJoinedCluster(t *testing.T, name string) ([]*testNode, string) {
	t.Helper()
	a := startNode(t, node.Config{Name: "a", Cluster: name, Embed: "127.0.0.1:-1"})
	url := a.node.ClientURL()
	b := startNode(t, node.Config{Name: "b", Cluster: name, URL: url})
	c := startNode(t, node.Config{Name: "c", Cluster: name, URL: url})
	return []*testNode{a, b, c}, url
}

// startRoutedCluster starts three daemons named a, b and c, each
// embedding a NATS server routed to the other two: one NATS cluster.
// base gives what else each node's config has.
func startRoutedCluster(t *testing.T, name string, base node.Config) []*testNode {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	var nodes []*testNode
	for i, n := range []string{"a", "b", "c"} {
		cfg := base
		cfg.Name, cfg.Cluster, cfg.Embed = n, name, "127.0.0.1:-1"
		cfg.RouteListen, cfg.Routes = fmt.Sprintf("127.0.0.1:%d", ports[i]), routes
		nodes = append(nodes, startNode(t, cfg))
	}
	return nodes
}

// testNode is a daemon served in-process as a node of a cluster.
type testNode struct {
	*testDaemon
	node  *node.Node
	leave func() // stops it: the node leaves, then the daemon stops; once
}

// startNode starts a daemon that joins the cluster as cfg says (its
// Logger and StoreDir filled in when empty); it leaves the cluster and
// stops when the test ends.
func startNode(t *testing.T, cfg node.Config) *testNode {
	t.Helper()
	if cfg.StoreDir == "" && cfg.Embed != "" {
		cfg.StoreDir = t.TempDir()
	}
	n, err := node.Join(cfg)
	if err != nil {
		t.Fatalf("join node %s: %v", cfg.Name, err)
	}
	d := startDaemon(t, daemon.Config{Node: cfg.Name, Supervisor: supervisor.Config{NextID: n.NextID, Queues: n.Queues(), Peers: n.Peers()}})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, d.Server) }()
	var once sync.Once
	leave := func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("node %s: Serve: %v", cfg.Name, err)
			}
			d.stop(t)
			n.Close()
		})
	}
	t.Cleanup(leave)
	return &testNode{testDaemon: d, node: n, leave: leave}
}

// clusterNames gives each test's cluster a name of its own, so clusters
// can share one NATS server.
var clusterNames atomic.Int64

func newClusterName() string { return fmt.Sprintf("t%d", clusterNames.Add(1)) }

// dialCluster connects a runtime to the cluster at url and waits until it
// has heard from the nodes named; it is closed when the test ends.
func dialCluster(t *testing.T, url string, nodes []string, opts ...interpreters.Option) *interpreters.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	rt, err := interpreters.Dial(ctx, url, opts...)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { rt.Close() })
	waitNodes(t, rt, nodes...)
	return rt
}

// waitNodes waits until rt lists exactly the nodes named: heartbeats come
// every second, so a node that is up shows within one.
func waitNodes(t *testing.T, rt *interpreters.Runtime, want ...string) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for {
		infos, err := rt.Nodes(context.Background())
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		var got []string
		for _, in := range infos {
			got = append(got, in.Name)
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Nodes = %v; want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port no one listens on now: route ports of
// embedded servers must be known before any of them starts.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
