package node

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"

	_ "github.com/subinterp/subinterp/cluster/node/internal/pseidle" // no NATS sampling in workers
)

// readyWait bounds the embedded server's start.
const readyWait = 10 * time.Second

// maxPayload is the largest message the embedded server takes: a value
// may be up to 63 MiB (protocol's limit), and NATS allows no more than 64.
const maxPayload = 64 << 20

// startServer runs the embedded NATS server the config asks for.
func startServer(c Config) (*server.Server, error) {
	host, port, err := splitPort(c.Embed)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS address %q: %v", c.Embed, err)
	}
	o := &server.Options{
		ServerName: c.Name, Host: host, Port: port,
		JetStream: true, StoreDir: c.StoreDir,
		MaxPayload: maxPayload,
		NoSigs:     true,
		TLSConfig:  c.ServerTLS,
		// A client gone silent is dropped in about three seconds, so its
		// interest in a node's answers does not outlive it by much.
		PingInterval: time.Second, MaxPingsOut: 2,
	}
	if c.ServerTLS != nil {
		o.TLSTimeout = 2
	}
	if c.Token != "" {
		o.Authorization = c.Token
	}
	if c.RouteListen != "" {
		rhost, rport, err := splitPort(c.RouteListen)
		if err != nil {
			return nil, fmt.Errorf("route address %q: %v", c.RouteListen, err)
		}
		o.Cluster = server.ClusterOpts{
			Name: c.Cluster, Host: rhost, Port: rport, TLSConfig: routeTLS(c),
			// A silent partition shows as no routes within seconds, which
			// is what the node fences on.
			PingInterval: time.Second, MaxPingsOut: 2,
		}
		if c.Token != "" {
			o.Cluster.Username, o.Cluster.Password = "route", c.Token
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %v", r, err)
			}
			if c.Token != "" && u.User == nil {
				u.User = url.UserPassword("route", c.Token)
			}
			o.Routes = append(o.Routes, u)
		}
	}
	if c.StoreDir == "" {
		return nil, fmt.Errorf("an embedded NATS server needs a directory of its own for its JetStream data")
	}
	ns, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %v", err)
	}
	ns.SetLogger(serverLog{c.Logger.Named("nats")}, false, false)
	ns.Start()
	if !ns.ReadyForConnections(readyWait) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start on %s (see the log)", c.Embed)
	}
	return ns, nil
}

// routeTLS is the TLS of routes, which each server both accepts and
// dials: its certificate to show, and the CA (--tls-ca) to verify its
// peers' with.
func routeTLS(c Config) *tls.Config {
	if c.ServerTLS == nil {
		return nil
	}
	t := c.ServerTLS.Clone()
	if c.TLS != nil {
		t.RootCAs = c.TLS.RootCAs
		t.ClientCAs = c.TLS.RootCAs
	}
	return t
}

func splitPort(hostport string) (string, int, error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want -1 (any free port) to 65535", p)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 would mean NATS's 4222
	}
	return host, port, nil
}

// serverLog hands the embedded server's logs to the node's logger. Its
// Fatalf only logs: the server then fails to start, which the node
// reports, rather than exit the daemon.
type serverLog struct{ l hclog.Logger }

func (s serverLog) Noticef(f string, v ...any) { s.l.Info(fmt.Sprintf(f, v...)) }
func (s serverLog) Warnf(f string, v ...any)   { s.l.Warn(fmt.Sprintf(f, v...)) }
func (s serverLog) Fatalf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Errorf(f string, v ...any)  { s.l.Error(fmt.Sprintf(f, v...)) }
func (s serverLog) Debugf(f string, v ...any)  { s.l.Debug(fmt.Sprintf(f, v...)) }
func (s serverLog) Tracef(f string, v ...any)  { s.l.Trace(fmt.Sprintf(f, v...)) }
