package integration

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/supervisor"
)

// BenchmarkCluster puts a cluster runtime beside a single daemon reached
// by Dial on its Unix socket, in one run: Call of a trivial function, and
// Create. The cluster is one node whose daemon embeds the NATS server;
// the client reaches it over TCP on loopback, so a call goes client →
// NATS server → node → supervisor → worker and back. Each reports its
// median (p50-ns) beside the mean (ns/op).
func BenchmarkCluster(b *testing.B) {
	d := startBenchDaemon(b)
	daemonRT, err := interpreters.Dial(context.Background(), d.SocketPath())
	if err != nil {
		b.Fatal(err)
	}
	defer daemonRT.Close()

	n, err := node.Join(node.Config{Name: "bench", Cluster: "bench", Embed: "127.0.0.1:-1", StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	startBenchNode(b, n)
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	clusterRT, err := interpreters.Dial(ctx, n.ClientURL(), interpreters.WithCluster("bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer clusterRT.Close()

	for _, rt := range []struct {
		name string
		rt   *interpreters.Runtime
	}{{"daemon-dial", daemonRT}, {"cluster", clusterRT}} {
		b.Run(rt.name+"-call", func(b *testing.B) {
			it, err := rt.rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			if err := it.Exec(`function echo(x) return x end`); err != nil {
				b.Fatal(err)
			}
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := it.Call("echo", i); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
			}
			reportP50(b, times)
		})
	}
	for _, rt := range []struct {
		name string
		rt   *interpreters.Runtime
	}{{"daemon-dial", daemonRT}, {"cluster", clusterRT}} {
		b.Run(rt.name+"-create", func(b *testing.B) {
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				it, err := rt.rt.Create()
				if err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				b.StopTimer()
				if err := it.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportP50(b, times)
		})
	}
}

func reportP50(b *testing.B, times []time.Duration) {
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
}

// startBenchDaemon serves a daemon in-process for a benchmark until it
// ends.
func startBenchDaemon(b *testing.B, cfgs ...daemon.Config) *daemon.Server {
	b.Helper()
	var cfg daemon.Config
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	cfg.Socket = b.TempDir() + "/d.sock"
	srv, err := daemon.Listen(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
	})
	return srv
}

// startBenchNode serves a daemon in-process as node n until the benchmark
// ends.
func startBenchNode(b *testing.B, n *node.Node) *daemon.Server {
	b.Helper()
	srv := startBenchDaemon(b, daemon.Config{Node: n.Name(), Supervisor: supervisor.Config{NextID: n.NextID, Queues: n.Queues(), Peers: n.Peers()}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, srv) }()
	b.Cleanup(func() {
		cancel()
		<-done
		n.Close()
	})
	return srv
}
