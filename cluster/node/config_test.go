package node

import (
	"crypto/tls"
	"strings"
	"testing"
)

// TestConfigRefusesInsecure: off loopback, listening or joining needs both
// TLS and credentials; on loopback neither is needed.
func TestConfigRefusesInsecure(t *testing.T) {
	srv := &tls.Config{}
	cli := &tls.Config{}
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"embed on loopback", Config{Embed: "127.0.0.1:4222"}, true},
		{"embed on localhost", Config{Embed: "localhost:-1"}, true},
		{"embed on every address", Config{Embed: "0.0.0.0:4222"}, false},
		{"embed on an empty host", Config{Embed: ":4222"}, false},
		{"embed with TLS, no credentials", Config{Embed: "0.0.0.0:4222", ServerTLS: srv}, false},
		{"embed with a token, no TLS", Config{Embed: "0.0.0.0:4222", Token: "t"}, false},
		{"embed with TLS and a token", Config{Embed: "0.0.0.0:4222", ServerTLS: srv, Token: "t"}, true},
		{"embed with TLS and only a creds file, which the embedded server does not check", Config{Embed: "0.0.0.0:4222", ServerTLS: srv, CredsFile: "u.creds"}, false},
		{"a route to another machine with TLS and only a creds file, which routes do not present", Config{Embed: "127.0.0.1:-1", ServerTLS: srv, CredsFile: "u.creds", RouteListen: "127.0.0.1:6222", Routes: []string{"nats://192.0.2.1:6222"}}, false},
		{"routes off loopback with TLS and only a creds file", Config{Embed: "127.0.0.1:-1", ServerTLS: srv, CredsFile: "u.creds", RouteListen: "0.0.0.0:6222", Routes: []string{"nats://127.0.0.1:6222"}}, false},
		{"routes off loopback", Config{Embed: "127.0.0.1:-1", RouteListen: "0.0.0.0:6222", Routes: []string{"nats://127.0.0.1:6222"}}, false},
		{"a route to another machine", Config{Embed: "127.0.0.1:-1", RouteListen: "127.0.0.1:6222", Routes: []string{"nats://192.0.2.1:6222"}}, false},
		{"join on loopback", Config{URL: "nats://127.0.0.1:4222"}, true},
		{"join another machine", Config{URL: "nats://192.0.2.1:4222"}, false},
		{"join with TLS only", Config{URL: "tls://192.0.2.1:4222"}, false},
		{"join with TLS and a token", Config{URL: "tls://192.0.2.1:4222", Token: "t"}, true},
		{"join with a CA and a creds file", Config{URL: "nats://192.0.2.1:4222", TLS: cli, CredsFile: "u.creds"}, true},
		{"join with user and password in the URL, no TLS", Config{URL: "nats://u:p@192.0.2.1:4222"}, false},
		{"one of several URLs off loopback", Config{URL: "nats://127.0.0.1:4222,nats://192.0.2.1:4222"}, false},
	}
	for _, c := range cases {
		c.cfg.Name = "n"
		_, err := c.cfg.withDefaults()
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case !c.ok && err == nil:
			t.Errorf("%s: accepted", c.name)
		case !c.ok && !strings.Contains(err.Error(), "without TLS and credentials"):
			t.Errorf("%s: %v; want the refusal to name TLS and credentials", c.name, err)
		}
	}
}

// TestConfigNames: node and cluster names are subject tokens.
func TestConfigNames(t *testing.T) {
	for _, name := range []string{"", "a.b", "a b", "a*", "a>"} {
		if _, err := (Config{Name: name, Embed: "127.0.0.1:-1"}).withDefaults(); err == nil {
			t.Errorf("node name %q accepted", name)
		}
	}
	if _, err := (Config{Name: "n", Cluster: "x.y", Embed: "127.0.0.1:-1"}).withDefaults(); err == nil {
		t.Error(`cluster name "x.y" accepted`)
	}
	if _, err := (Config{Name: "n"}).withDefaults(); err == nil {
		t.Error("neither a URL nor an embedded server: accepted")
	}
}
