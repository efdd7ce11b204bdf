package integration

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/internal/handoffbench"
	"github.com/subinterp/subinterp/interpreters"
)

// BenchmarkClusterQueueHandOff: a put to a get waiting for it, through
// the runtime API, on a local runtime's queue and on a cluster runtime's
// queue with one replica (one node embedding the NATS server) and with
// three (three nodes whose embedded servers form one JetStream cluster),
// in one run. Each reports the median hand-off (p50-ns): from the start
// of Put to the return of the Get that was waiting.
func BenchmarkClusterQueueHandOff(b *testing.B) {
	local := interpreters.New()
	defer local.Close()
	r1 := benchCluster(b, "benchq1", 1)
	r3 := benchCluster(b, "benchq3", 3)
	for _, rt := range []struct {
		name string
		rt   *interpreters.Runtime
	}{{"local", local}, {"cluster-R1", r1}, {"cluster-R3", r3}} {
		b.Run(rt.name, func(b *testing.B) {
			q, err := rt.rt.CreateQueue(0)
			if err != nil {
				b.Fatal(err)
			}
			handoffbench.Run(b, func(i int) error { return q.Put(i) }, q.Get)
		})
	}
}

// benchCluster starts a cluster of replicas nodes whose embedded NATS
// servers route to one another, keeping that many replicas of each
// queue, and dials it.
func benchCluster(b *testing.B, name string, replicas int) *interpreters.Runtime {
	b.Helper()
	var routes []string
	ports := make([]int, replicas)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	var first *node.Node
	for i := range replicas {
		cfg := node.Config{Name: fmt.Sprintf("n%d", i), Cluster: name, Embed: "127.0.0.1:-1", Replicas: replicas, StoreDir: b.TempDir()}
		if replicas > 1 {
			cfg.RouteListen, cfg.Routes = fmt.Sprintf("127.0.0.1:%d", ports[i]), routes
		}
		n, err := node.Join(cfg)
		if err != nil {
			b.Fatal(err)
		}
		startBenchNode(b, n)
		if first == nil {
			first = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	rt, err := interpreters.Dial(ctx, first.ClientURL(), interpreters.WithCluster(name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	return rt
}
