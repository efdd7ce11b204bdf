package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterPartition cuts a node off for real: its daemon runs in a
// network namespace of its own, joined to the hub's NATS server by a veth
// pair, and the link is taken down in the middle of a call. The cluster
// declares the node lost (the call fails with ErrNodeLost), and the node,
// cut off, closes its own interpreters while its daemon lives on. When
// the link comes back the node rejoins as a new instance: the lost
// interpreter stays lost, new ones work. Because the hub listens off
// loopback, this is also the TLS-and-token path. Network namespaces need
// root.
func TestClusterPartition(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2) for network namespaces")
	}
	bin := buildCLI(t)
	ns, hostIf, hostIP, nsIP := makeNetns(t)

	srvTLS, caPEM, err := testcert.For(hostIP)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, tokenFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clientTLS := testcert.Client(caPEM)

	hub := startNode(t, node.Config{Name: "hub", Embed: hostIP + ":-1", Token: "s3cret", ServerTLS: srvTLS, TLS: clientTLS})
	url := hub.node.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("the hub serves %s, want TLS", url)
	}
	victim := startServeIn(t, ns, bin, filepath.Join(socketDir(t), "v.sock"),
		"--node", "victim", "--nats", url, "--token-file", tokenFile, "--tls-ca", caFile)
	rt := dialCluster(t, url, []string{"hub", "victim"}, interpreters.WithToken("s3cret"), interpreters.WithTLS(clientTLS))
	t.Logf("hub %s, victim in namespace %s at %s", url, ns, nsIP)

	doomed := create(t, rt, interpreters.WithNode("victim"))
	pid, err := doomed.Pid()
	if err != nil {
		t.Fatal(err)
	}
	th := doomed.CallInThread("function() while true do end end")
	waitRunning(t, doomed, th.Done())

	ip(t, "link", "set", hostIf, "down")
	cut := time.Now()
	select {
	case <-th.Done():
	case <-time.After(cluster.LostAfter + bounded):
		t.Fatal("the call in flight on the cut-off node never returned")
	}
	_, err = th.Wait()
	t.Logf("the call in flight failed %v after the cut: %v", time.Since(cut).Round(time.Millisecond), err)
	wantErr(t, "the call in flight on the cut-off node", err, interpreters.ErrNodeLost)
	waitNodes(t, rt, "hub")
	// Fencing: the cut-off daemon closed its interpreter itself.
	waitProcessGone(t, pid)
	victim.waitLog(t, "cut off from the cluster", 1)
	select {
	case <-victim.exited:
		t.Fatalf("the cut-off daemon exited (%v); it should live on:\n%s", victim.err, victim.logs.String())
	default:
	}
	t.Logf("its worker was gone %v after the cut", time.Since(cut).Round(time.Millisecond))

	// Healed: the node is back as a new instance; what it had stays lost.
	ip(t, "link", "set", hostIf, "up")
	waitNodes(t, rt, "hub", "victim")
	_, err = doomed.Call("tostring", 1)
	wantErr(t, "a call to the interpreter lost with the partition", err, interpreters.ErrNodeLost)
	fresh := create(t, rt, interpreters.WithNode("victim"))
	wantEqual(t, "a call on the node back in the cluster", mustCall(t, fresh, "function() return 7 end"), int64(7))
}

// makeNetns makes a network namespace joined to this one by a veth pair,
// each end with an address of a /30 of its own; both go when the test
// ends.
func makeNetns(t *testing.T) (ns, hostIf, hostIP, nsIP string) {
	t.Helper()
	n := rand.IntN(250) + 1
	ns = fmt.Sprintf("subinterp-t%d-%d", os.Getpid(), n)
	hostIf, nsIf := fmt.Sprintf("sih%d", n), fmt.Sprintf("sin%d", n)
	hostIP, nsIP = fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	ip(t, "addr", "add", hostIP+"/30", "dev", hostIf)
	ip(t, "link", "set", hostIf, "up")
	ip(t, "-n", ns, "addr", "add", nsIP+"/30", "dev", nsIf)
	ip(t, "-n", ns, "link", "set", nsIf, "up")
	ip(t, "-n", ns, "link", "set", "lo", "up")
	return ns, hostIf, hostIP, nsIP
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startServeIn is startServe with the daemon in network namespace ns.
func startServeIn(t *testing.T, ns, bin, socket string, args ...string) *serveProc {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", ns, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return startServe(t, wrapper, socket, args...)
}
