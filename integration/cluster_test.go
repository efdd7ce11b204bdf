package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterJoined: three daemons on loopback, one embedding NATS and two
// joining it, are one runtime: placement, routing, IDs and listings span
// the nodes.
func TestClusterJoined(t *testing.T) {
	t.Parallel()
	name := newClusterName()
	nodes, url := startJoinedCluster(t, name)
	a, c := nodes[0], nodes[2]
	rt := dialCluster(t, url, []string{"a", "b", "c"}, interpreters.WithCluster(name))
	checkSpansNodes(t, rt, url, name, []string{"a", "b", "c"})

	// A node that stops says so: it is lost at once, with its
	// interpreters, and the others carry on.
	onC := create(t, rt, interpreters.WithNode("c"))
	c.leave()
	waitNodes(t, rt, "a", "b")
	_, err := onC.Call("tostring", 1)
	wantErr(t, "a call to an interpreter of the node that left", err, interpreters.ErrNodeLost)

	// A node's metrics say which node they are of.
	mfs, err := a.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	labelled := false
	for _, mf := range mfs {
		if mf.GetName() != "subinterp_interpreters_alive" {
			continue
		}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labelled = labelled || (l.GetName() == "node" && l.GetValue() == "a")
		}
	}
	if !labelled {
		t.Error(`node a's subinterp_interpreters_alive has no label node="a"`)
	}
}

// TestClusterRouted: three daemons whose embedded NATS servers route to
// one another form one cluster; a client connected to any one server
// reaches the interpreters of every node. Clients and routes speak TLS
// and present a token.
func TestClusterRouted(t *testing.T) {
	t.Parallel()
	srvTLS, caPEM, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := testcert.Client(caPEM)
	name := newClusterName()
	names := []string{"a", "b", "c"}
	nodes := startRoutedCluster(t, name, node.Config{Token: "s3cret", ServerTLS: srvTLS, TLS: clientTLS})
	// Through the server embedded in c: requests to a and b cross routes.
	url := nodes[2].node.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("the embedded server serves %s, want TLS", url)
	}
	auth := []interpreters.Option{interpreters.WithToken("s3cret"), interpreters.WithTLS(clientTLS)}
	_, err = interpreters.Dial(context.Background(), url, interpreters.WithCluster(name), interpreters.WithTLS(clientTLS))
	wantErr(t, "Dial without the token", err, interpreters.ErrPermissionDenied)
	rt := dialCluster(t, url, names, append(auth, interpreters.WithCluster(name))...)
	checkSpansNodes(t, rt, url, name, names, auth...)
}

// checkSpansNodes is what both three-node clusters must show.
func checkSpansNodes(t *testing.T, rt *interpreters.Runtime, url, cluster string, names []string, auth ...interpreters.Option) {
	t.Helper()
	// Least-loaded placement spreads a burst over every node.
	perNode := map[string][]*interpreters.Interpreter{}
	seen := map[int64]bool{}
	var all []*interpreters.Interpreter
	for range 2 * len(names) {
		it := create(t, rt)
		if seen[it.ID()] || it.ID() <= 0 || it.ID() > 1<<53-1 {
			t.Fatalf("ID %d: repeated or out of range", it.ID())
		}
		seen[it.ID()] = true
		perNode[it.Node()] = append(perNode[it.Node()], it)
		all = append(all, it)
	}
	for _, n := range names {
		if len(perNode[n]) != 2 {
			t.Errorf("node %s got %d of %d interpreters; want 2 each: %v", n, len(perNode[n]), 2*len(names), perNode)
		}
	}
	// Every method reaches the interpreter's node.
	for _, it := range all {
		if err := it.Exec(fmt.Sprintf("x = %d", it.ID())); err != nil {
			t.Fatalf("Exec in %v on %s: %v", it, it.Node(), err)
		}
		wantEqual(t, "x in "+it.String(), mustCall(t, it, "function() return x end"), it.ID())
	}
	infos, err := rt.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Pid <= 0 {
			t.Errorf("node %s: pid %d", in.Name, in.Pid)
		}
	}

	// WithNode places; an unknown node is an invalid argument.
	onB := create(t, rt, interpreters.WithNode(names[1]))
	wantEqual(t, "Node of an interpreter created WithNode", onB.Node(), names[1])
	_, err = rt.Create(interpreters.WithNode("nowhere"))
	wantErr(t, "WithNode of an unknown node", err, interpreters.ErrInvalidArgument)

	// The same placement key, the same node.
	k1 := create(t, rt, interpreters.WithPlacementKey("tenant-42"))
	k2 := create(t, rt, interpreters.WithPlacementKey("tenant-42"))
	wantEqual(t, "node of the second interpreter of one key", k2.Node(), k1.Node())

	// Interpreters a script creates get cluster-wide IDs too.
	child := mustCall(t, onB, `function() return require("interpreters").create().id end`).(int64)
	if seen[child] || child == onB.ID() || child == k1.ID() || child == k2.ID() {
		t.Errorf("the Lua-made interpreter got ID %d, already given", child)
	}

	// A host function runs in the client that gave it, whatever the node.
	twice := interpreters.WithFunc("twice", func(_ context.Context, args ...any) (any, error) {
		return args[0].(int64) * 2, nil
	})
	hosted := create(t, rt, twice, interpreters.WithNode(names[2]))
	wantEqual(t, "a host function called from a node", mustCall(t, hosted, `function(x) return require("host").twice(x) end`, 21), int64(42))

	// Another client sees the same runtime: ListAll across nodes, Lookup
	// finds each on its node.
	other := dialCluster(t, url, names, append(auth, interpreters.WithCluster(cluster))...)
	listed := listAll(t, other)
	ids := map[int64]string{}
	for _, it := range listed[1:] {
		ids[it.ID()] = it.Node()
	}
	for _, it := range append(all, onB, k1, k2) {
		if ids[it.ID()] != it.Node() {
			t.Errorf("%v: the other client lists it on %q, want %q", it, ids[it.ID()], it.Node())
		}
	}
	if ids[child] != names[1] {
		t.Errorf("the Lua-made interpreter %d is listed on %q, want %s", child, ids[child], names[1])
	}
	got, err := other.Lookup(all[0].ID())
	if err != nil {
		t.Fatalf("Lookup from the other client: %v", err)
	}
	wantEqual(t, "its node", got.Node(), all[0].Node())
	wantEqual(t, "a call through the other client", mustCall(t, got, "function() return x end"), all[0].ID())

	// Close on any node; the ID is then unknown everywhere.
	if err := got.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = rt.Lookup(all[0].ID())
	wantErr(t, "Lookup of the closed interpreter", err, interpreters.ErrInterpreterNotFound)
	if errors.Is(err, interpreters.ErrNodeLost) {
		t.Errorf("a closed interpreter is not on a lost node: %v", err)
	}
	if !strings.Contains(fmt.Sprint(listed[0]), "Interpreter(0)") {
		t.Errorf("ListAll starts with %v, want main", listed[0])
	}
}

// TestClusterClientServerLost: a client whose own NATS server goes away
// (it was embedded in a node that stopped) never waits for ever: its
// request in flight fails with ErrUnavailable, as over a lost daemon
// connection; it reconnects to another server of the cluster, where the
// node that went is lost and the others answer.
func TestClusterClientServerLost(t *testing.T) {
	t.Parallel()
	name := newClusterName()
	names := []string{"a", "b", "c"}
	// Three replicas of the ID counter, as three routed servers should
	// have: with one, losing its server would stop new ID blocks until it
	// came back.
	nodes := startR3Cluster(t, name)
	rt := dialCluster(t, nodes[2].node.ClientURL(), names, interpreters.WithCluster(name))
	onB := create(t, rt, interpreters.WithNode("b"))
	// The call in flight ends by its own deadline on a, so the daemon's
	// shutdown need not wait for it.
	onA := create(t, rt, interpreters.WithNode("a"), interpreters.WithCallTimeout(3*time.Second))
	onC := create(t, rt, interpreters.WithNode("c"))
	th := onA.CallInThread("function() while true do end end")
	waitRunning(t, onA, th.Done())

	nodes[2].node.Close() // c leaves: its embedded server, the client's, goes with it
	select {
	case <-th.Done():
	case <-time.After(bounded):
		t.Fatal("the call in flight when the client's server went never returned")
	}
	_, err := th.Wait()
	wantErr(t, "the call in flight when the client's server went", err, interpreters.ErrUnavailable)

	waitNodes(t, rt, "a", "b")
	_, err = onC.Call("tostring", 1)
	wantErr(t, "a call to the interpreter of the node that went", err, interpreters.ErrNodeLost)
	wantEqual(t, "a call on b through another server", mustCall(t, onB, "function() return 5 end"), int64(5))
}
