package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
)

// clusterFlags are serve's flags for joining a cluster as a node.
type clusterFlags struct {
	node        string
	cluster     string
	nats        string
	embed       string
	routeListen string
	routes      string
	creds       string
	store       string
	replicas    int
}

func (c *clusterFlags) addFlags(f *pflag.FlagSet, g *clientFlags) {
	f.StringVar(&c.node, "node", "", "join a cluster as the node of this name (with --nats or --nats-embed)")
	f.StringVar(&c.cluster, "cluster", cluster.DefaultName, "the cluster's name: clusters sharing one NATS deployment keep apart by it")
	f.StringVar(&c.nats, "nats", "", "join the NATS deployment at this URL (nats://HOST:PORT or tls://HOST:PORT, several comma-separated)")
	f.StringVar(&c.embed, "nats-embed", "", "run a NATS server in the daemon on this HOST:PORT and join it")
	f.StringVar(&c.routeListen, "nats-cluster", "", "HOST:PORT the embedded NATS server listens on for routes from the other embedded servers (with --nats-routes)")
	f.StringVar(&c.routes, "nats-routes", "", "routes to every embedded NATS server of the cluster, this one's included: nats://HOST:PORT,... (with --nats-cluster)")
	f.StringVar(&c.creds, "creds", "", "NATS credentials file (user JWT and nkey seed) the node presents when it joins")
	f.StringVar(&c.store, "nats-store", "", "directory of the embedded NATS server's JetStream data (default: under $XDG_STATE_HOME or ~/.local/state)")
	f.IntVar(&c.replicas, "nats-replicas", 1, "copies JetStream keeps of the cluster's state and of every queue made on this node: 1, or 3 with three or more NATS servers")
	f.StringVar(&g.tlsCA, "tls-ca", "", "PEM file of the CA that signed the NATS servers' certificates, for joining with --nats")
}

// join joins the cluster when --node is given; nil otherwise. Bad or
// insecure settings are usage errors.
func (c *clusterFlags) join(g *clientFlags, cfg *daemon.Config, logger hclog.Logger) (*node.Node, error) {
	if c.node == "" {
		if c.nats != "" || c.embed != "" || c.routes != "" || c.routeListen != "" {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("--nats, --nats-embed and --nats-routes need --node NAME")}
		}
		return nil, nil
	}
	ncfg := node.Config{
		Name: c.node, Cluster: c.cluster, URL: c.nats, Embed: c.embed, RouteListen: c.routeListen,
		CredsFile: c.creds, StoreDir: c.store, Replicas: c.replicas, ServerTLS: cfg.TLS,
		Logger: logger.With("node", c.node).Named("cluster"),
	}
	if c.routes != "" {
		ncfg.Routes = strings.Split(c.routes, ",")
	}
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("read token file: %v", err)}
		}
		ncfg.Token = strings.TrimSpace(string(b))
	}
	if g.tlsCA != "" {
		pem, err := os.ReadFile(g.tlsCA)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("read --tls-ca: %v", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("--tls-ca %s holds no PEM certificate", g.tlsCA)}
		}
		ncfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if ncfg.Embed != "" && ncfg.StoreDir == "" {
		dir, err := stateDir()
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("no --nats-store given and no state directory: %v", err)}
		}
		ncfg.StoreDir = filepath.Join(dir, "subinterp", "nats", c.cluster+"-"+c.node)
	}
	n, err := node.Join(ncfg)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return n, nil
}

func stateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "state"), nil
}
