package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/subinterp/subinterp/cluster"
)

// Config says how a daemon joins a cluster. Give either URL (join an
// existing NATS deployment) or Embed (run a NATS server in the daemon and
// join it).
type Config struct {
	// Name is the node's name, unique in the cluster.
	Name string
	// Cluster is the cluster's name; empty means cluster.DefaultName.
	Cluster string
	// URL is the NATS deployment to join: one or more comma-separated
	// nats:// or tls:// URLs.
	URL string
	// Embed is the HOST:PORT the embedded NATS server listens on for
	// clients (port -1: any free port).
	Embed string
	// RouteListen is the HOST:PORT the embedded server listens on for the
	// routes of the other embedded servers of the cluster; Routes lists
	// them all (this one's may be among them). Both or neither.
	RouteListen string
	Routes      []string
	// Token authenticates: the embedded server requires it of every client
	// and route, and the node presents it when it joins.
	Token string
	// CredsFile is a NATS credentials file the node presents when it joins.
	CredsFile string
	// TLS is the client side: how the node verifies the NATS servers it
	// joins (their CA).
	TLS *tls.Config
	// ServerTLS is the embedded server's certificate, for its client and
	// route listeners; with it they speak TLS only.
	ServerTLS *tls.Config
	// StoreDir is where the embedded server keeps its JetStream data. It
	// must be the node's own.
	StoreDir string
	// Replicas is how many copies JetStream keeps of the cluster's state
	// (the ID counter) and of each queue made on this node: 1, or 3 in a
	// cluster of three or more NATS servers. 0 means 1.
	Replicas int
	// Logger receives the node's logs and the embedded server's.
	Logger hclog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Cluster == "" {
		c.Cluster = cluster.DefaultName
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if err := cluster.CheckName("node", c.Name); err != nil {
		return c, err
	}
	if err := cluster.CheckName("cluster", c.Cluster); err != nil {
		return c, err
	}
	switch {
	case (c.URL == "") == (c.Embed == ""):
		return c, fmt.Errorf("give one of a NATS URL to join (--nats) or an address to embed a NATS server on (--nats-embed)")
	case (c.RouteListen == "") != (len(c.Routes) == 0):
		return c, fmt.Errorf("routes between embedded NATS servers need both the route listen address and the route list")
	case c.RouteListen != "" && c.Embed == "":
		return c, fmt.Errorf("routes are for an embedded NATS server (--nats-embed)")
	case c.Replicas != 1 && c.Replicas != 3:
		return c, fmt.Errorf("replicas %d: want 1 or 3", c.Replicas)
	}
	return c, c.checkSecure()
}

// checkSecure refuses to listen or join on an address other machines can
// reach without both TLS and credentials: anyone who reaches the subjects
// can run code on every node.
//
// A listener's credentials are the token alone: it is what the embedded
// server requires of whoever connects. A credentials file is only what the
// node presents when it joins; the embedded server does not run in
// operator mode, so it would let anyone in beside the node.
func (c Config) checkSecure() error {
	creds := c.Token != "" || c.CredsFile != ""
	if c.Embed != "" {
		host, _, err := net.SplitHostPort(c.Embed)
		if err != nil {
			return fmt.Errorf("embedded NATS address %q: %v", c.Embed, err)
		}
		if !loopback(host) && (c.ServerTLS == nil || c.Token == "") {
			return fmt.Errorf("refusing to listen for NATS on %s, which is not a loopback address, without TLS and credentials: give --tls-cert, --tls-key and --token-file", c.Embed)
		}
	}
	if c.RouteListen != "" {
		host, _, err := net.SplitHostPort(c.RouteListen)
		if err != nil {
			return fmt.Errorf("route address %q: %v", c.RouteListen, err)
		}
		if !loopback(host) && (c.ServerTLS == nil || c.Token == "") {
			return fmt.Errorf("refusing to listen for NATS routes on %s, which is not a loopback address, without TLS and credentials: give --tls-cert, --tls-key and --token-file", c.RouteListen)
		}
	}
	for _, r := range c.Routes {
		if err := checkURL("route", r, c.ServerTLS != nil, c.Token != ""); err != nil {
			return err
		}
	}
	if c.URL != "" {
		for _, u := range strings.Split(c.URL, ",") {
			if err := checkURL("NATS", strings.TrimSpace(u), c.TLS != nil, creds); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkURL(what, raw string, haveTLS, creds bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s URL %q: want nats://HOST:PORT or tls://HOST:PORT", what, raw)
	}
	if u.User != nil {
		creds = true
	}
	if u.Scheme == "tls" {
		haveTLS = true
	}
	if !loopback(u.Hostname()) && (!haveTLS || !creds) {
		return fmt.Errorf("refusing to join %s at %s, which is not a loopback address, without TLS and credentials: give --tls-ca (or a tls:// URL) and --token-file or --creds", what, raw)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
