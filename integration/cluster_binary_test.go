package integration

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterBinary drives nodes run by the built binary: the CLI through
// the cluster, a node SIGKILLed in the middle of a call, and the refusal
// to listen or join without TLS and credentials off loopback.
func TestClusterBinary(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)

	// Off loopback, without TLS and credentials: refused before anything
	// listens or connects (192.0.2.1 is a documentation address no one
	// answers on).
	for _, args := range [][]string{
		{"--nats-embed", "0.0.0.0:4222"},
		{"--nats", "nats://192.0.2.1:4222"},
		{"--nats-embed", "127.0.0.1:-1", "--nats-cluster", "0.0.0.0:6222", "--nats-routes", "nats://127.0.0.1:6222"},
	} {
		all := append([]string{"serve", "--socket", filepath.Join(socketDir(t), "r.sock"), "--node", "x"}, args...)
		r := runCLI(t, nil, bin, "", all...)
		if r.code == 0 || !strings.Contains(r.stderr, "without TLS and credentials") {
			t.Errorf("serve %v: exit %d, stderr %q; want a refusal naming TLS and credentials", args, r.code, r.stderr)
		}
	}

	// A hub node in this process embeds NATS; the node under test joins
	// it from a process of its own.
	hub := startNode(t, node.Config{Name: "hub", Embed: "127.0.0.1:-1"})
	url := hub.node.ClientURL()
	victim := startServe(t, bin, filepath.Join(socketDir(t), "v.sock"), "--node", "victim", "--nats", url)
	rt := dialCluster(t, url, []string{"hub", "victim"})

	// The CLI through the cluster.
	ctl := func(args ...string) cliResult {
		return runCLI(t, nil, bin, "", append(args, "--socket", url)...)
	}
	id := strings.TrimSpace(ctl("create", "--node", "victim").want(t, "create --node victim", 0).stdout)
	ctl("exec", id, "-e", "print('from ' .. 6 * 7)").want(t, "exec", 0)
	if out := ctl("exec", id, "-e", "print('from ' .. 6 * 7)").stdout; out != "from 42\n" {
		t.Errorf("exec through the cluster printed %q", out)
	}
	ls := ctl("ls").want(t, "ls", 0).stdout
	if !strings.HasPrefix(ls, "NODE") || !strings.Contains(ls, "victim") {
		t.Errorf("ls on a cluster:\n%s\nwant a NODE column naming victim", ls)
	}
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(ctl("nodes", "--json").want(t, "nodes --json", 0).stdout), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || nodes[0]["name"] != "hub" || nodes[1]["name"] != "victim" || nodes[1]["interpreters"] != 1.0 {
		t.Errorf("nodes --json = %v; want hub and victim, victim with 1 interpreter", nodes)
	}
	n, _ := strconv.ParseInt(id, 10, 64)
	ctl("close", id).want(t, "close", 0)
	if _, err := rt.Lookup(n); err == nil {
		t.Errorf("interpreter %d still there after close through the CLI", n)
	}

	// SIGKILL of a node in the middle of a call.
	doomed := create(t, rt, interpreters.WithNode("victim"))
	survivor := create(t, rt, interpreters.WithNode("hub"))
	pid, err := doomed.Pid()
	if err != nil {
		t.Fatal(err)
	}
	th := doomed.CallInThread("function() while true do end end")
	waitRunning(t, doomed, th.Done())
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-th.Done():
	case <-time.After(cluster.LostAfter + bounded):
		t.Fatal("the call in flight on the killed node never returned")
	}
	_, err = th.Wait()
	t.Logf("the call in flight failed %v after the kill: %v", time.Since(killed).Round(time.Millisecond), err)
	wantErr(t, "the call in flight on the killed node", err, interpreters.ErrNodeLost)
	wantErr(t, "the same error", err, interpreters.ErrInterpreterNotFound)
	wantErr(t, "the same error", err, interpreters.ErrInterpreter)
	_, err = doomed.Call("tostring", 1)
	wantErr(t, "a new call to the lost node's interpreter", err, interpreters.ErrNodeLost)
	_, err = rt.Lookup(doomed.ID())
	wantErr(t, "Lookup of the lost node's interpreter", err, interpreters.ErrNodeLost)
	wantList(t, "ListAll without the lost node", listAll(t, rt), rt.GetMain(), survivor)
	waitNodes(t, rt, "hub")
	wantEqual(t, "a call on the surviving node", mustCall(t, survivor, "function(a) return a + 1 end", 41), int64(42))
	waitProcessGone(t, pid)
}
