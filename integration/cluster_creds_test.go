package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/interpreters"
)

// operatorNATS is a NATS server in operator mode: it admits only users
// whose JWT an account it trusts signed, as a production deployment
// with credentials files does.
type operatorNATS struct {
	url     string
	account nkeys.KeyPair // signs the users it admits
	dir     string
}

// startOperatorNATS runs one, with JetStream in its account, until the
// test ends.
func startOperatorNATS(t *testing.T) *operatorNATS {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "test"
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		tok, err := ac.Encode(okp)
		must(err)
		return kp, pub, tok
	}
	akp, apub, ajwt := account("app", true)
	_, spub, sjwt := account("sys", false)
	res := &server.MemAccResolver{}
	must(res.Store(apub, ajwt))
	must(res.Store(spub, sjwt))
	url := startNATS(t, func(o *server.Options) {
		o.TrustedOperators, o.AccountResolver, o.SystemAccount = []*jwt.OperatorClaims{oc}, res, spub
	})
	return &operatorNATS{url: url, account: akp, dir: t.TempDir()}
}

// creds writes a credentials file of a new user that signer vouches for:
// the server's account, or one it has never heard of.
func (o *operatorNATS) creds(t *testing.T, name string, signer nkeys.KeyPair) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	tok, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	file, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.dir, name+".creds")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClusterCredsFile: two daemons join a NATS deployment that admits
// only users with credentials files (operator mode, user JWTs and nkey
// seeds), each with its own file, and a client with another reaches
// both. Without credentials, or with a file no trusted account signed,
// the client is refused with ErrPermissionDenied and a node cannot join;
// a file that is not a credentials file is ErrInvalidArgument.
func TestClusterCredsFile(t *testing.T) {
	t.Parallel()
	o := startOperatorNATS(t)
	name := newClusterName()
	startNode(t, node.Config{Name: "a", Cluster: name, URL: o.url, CredsFile: o.creds(t, "node-a", o.account)})
	startNode(t, node.Config{Name: "b", Cluster: name, URL: o.url, CredsFile: o.creds(t, "node-b", o.account)})
	rt := dialCluster(t, o.url, []string{"a", "b"}, interpreters.WithCluster(name), interpreters.WithCredentials(o.creds(t, "client", o.account)))
	for _, n := range []string{"a", "b"} {
		it := create(t, rt, interpreters.WithNode(n))
		// A script's create takes an ID from the cluster's JetStream
		// counter, reached with the node's credentials.
		child := mustCall(t, it, `function() return require("interpreters").create().id end`).(int64)
		if child == it.ID() || child <= 0 {
			t.Errorf("node %s: the Lua-made interpreter got ID %d beside %d", n, child, it.ID())
		}
	}

	stranger, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	for _, c := range []struct {
		what string
		opts []interpreters.Option
	}{
		{"Dial without credentials", nil},
		{"Dial with a credentials file no trusted account signed", []interpreters.Option{interpreters.WithCredentials(o.creds(t, "stranger", stranger))}},
	} {
		rt, err := interpreters.Dial(ctx, o.url, append(c.opts, interpreters.WithCluster(name))...)
		if err == nil {
			rt.Close()
		}
		wantErr(t, c.what, err, interpreters.ErrPermissionDenied)
		if err != nil && !strings.Contains(err.Error(), "refused the credentials") {
			t.Errorf("%s: %v; want it to say the credentials were refused", c.what, err)
		}
	}
	garbage := filepath.Join(o.dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not a credentials file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, file := range map[string]string{"a file that is not a credentials file": garbage, "a missing file": filepath.Join(o.dir, "missing.creds")} {
		rt, err := interpreters.Dial(ctx, o.url, interpreters.WithCluster(name), interpreters.WithCredentials(file))
		if err == nil {
			rt.Close()
		}
		wantErr(t, "Dial with "+what, err, interpreters.ErrInvalidArgument)
	}

	_, err = node.Join(node.Config{Name: "c", Cluster: name, URL: o.url, CredsFile: o.creds(t, "node-c", stranger)})
	if err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Errorf("a node joining with a stranger's credentials: %v; want a refusal of the credentials", err)
	}
}

// TestClusterCredsFileCLI: the CLI presents a credentials file with
// --creds, as a client and as a node, and says plainly, exiting non-zero,
// when NATS refuses it or none is given.
func TestClusterCredsFileCLI(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	o := startOperatorNATS(t)
	name := newClusterName()
	startNode(t, node.Config{Name: "a", Cluster: name, URL: o.url, CredsFile: o.creds(t, "node-a", o.account)})
	ctl := func(args ...string) cliResult {
		return runCLI(t, nil, bin, "", append(args, "--socket", o.url, "--cluster", name)...)
	}
	id := strings.TrimSpace(ctl("create", "--creds", o.creds(t, "cli", o.account)).want(t, "create --creds", 0).stdout)
	if ls := ctl("ls", "--creds", o.creds(t, "cli2", o.account)).want(t, "ls --creds", 0).stdout; !strings.Contains(ls, id) {
		t.Errorf("ls with credentials:\n%s\nwant interpreter %s", ls, id)
	}
	if r := ctl("ls"); r.code == 0 || !strings.Contains(r.stderr, "refused the credentials") {
		t.Errorf("ls without credentials: exit %d, stderr %q; want a refusal of the credentials", r.code, r.stderr)
	}

	stranger, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, bin, "", "serve", "--socket", filepath.Join(socketDir(t), "c.sock"), "--node", "c", "--cluster", name,
		"--nats", o.url, "--creds", o.creds(t, "node-c", stranger))
	if r.code == 0 || !strings.Contains(r.stderr, "refused the credentials") {
		t.Errorf("serve with a stranger's credentials: exit %d, stderr %q; want a refusal of the credentials", r.code, r.stderr)
	}
}
