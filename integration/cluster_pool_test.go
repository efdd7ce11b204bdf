package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterPool: a Pool on a cluster runtime of three daemons spreads
// its workers over the nodes, two on each, though one node is already the
// busiest. Each task waits at a barrier until all six are running, so
// the six ran on six workers at once, and each says which interpreter
// it ran in.
func TestClusterPool(t *testing.T) {
	t.Parallel()
	name := newClusterName()
	_, url := startJoinedCluster(t, name)

	const workers = 6
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	barrier := interpreters.WithFunc("barrier", func(ctx context.Context, _ ...any) (any, error) {
		mu.Lock()
		if arrived++; arrived == workers {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	rt := dialCluster(t, url, []string{"a", "b", "c"}, interpreters.WithCluster(name), barrier)
	busy := []*interpreters.Interpreter{create(t, rt, interpreters.WithNode("b")), create(t, rt, interpreters.WithNode("b"))}

	pool, err := rt.NewPool(interpreters.PoolOptions{MaxWorkers: workers})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Shutdown(true, true)
	items := make([]any, workers)
	for i := range items {
		items[i] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	ids, err := pool.Map(ctx, `function() require("host").barrier() return require("interpreters").get_current().id end`, items)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	perNode := map[string]int{}
	seen := map[int64]bool{}
	for _, id := range ids {
		if seen[id.(int64)] {
			t.Fatalf("two tasks ran in interpreter %d, though each waited for all %d: %v", id, workers, ids)
		}
		seen[id.(int64)] = true
		it, err := rt.Lookup(id.(int64))
		if err != nil {
			t.Fatalf("Lookup(%d): %v", id, err)
		}
		perNode[it.Node()]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if perNode[n] != workers/3 {
			t.Errorf("the pool's workers per node are %v; want %d on each", perNode, workers/3)
			break
		}
	}
	for _, it := range busy {
		if it.Node() != "b" {
			t.Errorf("%v created WithNode(b) is on %q", it, it.Node())
		}
	}
	if t.Failed() {
		return
	}
	// Shut down, the pool leaves no worker on any node.
	if err := pool.Shutdown(true, false); err != nil {
		t.Fatal(err)
	}
	left := listAll(t, rt)
	wantEqual(t, "interpreters left after the pool's shutdown (main and the two made apart)", fmt.Sprint(left), fmt.Sprint(append([]*interpreters.Interpreter{rt.GetMain()}, busy...)))

	// Creates at once spread too: each counts on its node before it lands,
	// so the others see it. (Before, all six went to the node that looked
	// least loaded when they began.)
	created := make(chan *interpreters.Interpreter, workers)
	for range workers {
		go func() {
			it, err := rt.Create()
			if err != nil {
				t.Errorf("Create: %v", err)
			}
			created <- it
		}()
	}
	used := map[string]int{}
	for range workers {
		if it := <-created; it != nil {
			used[it.Node()]++
		}
	}
	if len(used) < 2 {
		t.Errorf("%d creates at once went to %v; want them spread over the nodes", workers, used)
	}
}
