package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/internal/handoffbench"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
)

// jetStreamCluster runs three in-process NATS servers routed into one
// JetStream cluster and connects to the first.
func jetStreamCluster(t testing.TB) *nats.Conn {
	t.Helper()
	return connect(t, startJetStreamCluster(t)[0])
}

// connect connects to ns alone, until the test ends.
func connect(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startJetStreamCluster runs three in-process NATS servers routed into
// one JetStream cluster until the test ends.
func startJetStreamCluster(t testing.TB) []*server.Server {
	t.Helper()
	var routes []*url.URL
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*server.Server
	for i, port := range ports {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "qt", Host: "127.0.0.1", Port: port},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		servers = append(servers, ns)
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(hang) {
			t.Fatal("NATS server did not start")
		}
	}
	return servers
}

// threeServers starts a test on three routed JetStream servers: skipped
// with -short, run in parallel, with a context bounded by hang.
func threeServers(t *testing.T) (context.Context, []*server.Server) {
	t.Helper()
	if testing.Short() {
		t.Skip("three NATS servers")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	t.Cleanup(cancel)
	return ctx, startJetStreamCluster(t)
}

// createWhenReady creates queue id, trying again while the JetStream
// cluster is still electing its leaders (a request then goes unanswered,
// so each try has a bound of its own).
func createWhenReady(t testing.TB, qs *cluster.Queues, id int64, c cluster.QueueConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		err := qs.Create(tctx, id, c)
		tcancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("create queue %d: %v", id, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BenchmarkQueueHandOff: a put to a get waiting for it, on a cluster-wide
// queue with one and with three replicas, beside a local runtime's queue;
// -take is a node's get for its interpreter (Take, settled at once).
func BenchmarkQueueHandOff(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		rt := interpreters.New()
		defer rt.Close()
		q, err := rt.CreateQueue(0)
		if err != nil {
			b.Fatal(err)
		}
		handoffbench.Run(b, func(i int) error { return q.Put(i) }, q.Get)
	})
	for _, r := range []int{1, 3} {
		b.Run(fmt.Sprintf("jetstream-R%d", r), func(b *testing.B) {
			var nc *nats.Conn
			if r == 1 {
				nc = jetStream(b)
			} else {
				nc = jetStreamCluster(b)
			}
			qs := newQueues(b, nc, r)
			createWhenReady(b, qs, 1, cluster.QueueConfig{Unbound: protocol.UnboundReplace})
			ctx := context.Background()
			put := func(i int) error { return qs.Put(ctx, 1, cluster.QueueItem{Data: []byte{byte(i)}}, true) }
			b.Run("get", func(b *testing.B) {
				handoffbench.Run(b, put, func() (any, error) { return qs.Get(ctx, 1, true) })
			})
			b.Run("take", func(b *testing.B) {
				handoffbench.Run(b, put, func() (any, error) {
					it, settle, err := qs.Take(ctx, 1, true)
					if err == nil {
						settle(true)
					}
					return it, err
				})
			})
		})
	}
}
