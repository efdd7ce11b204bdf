package daemon

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subinterp/subinterp/supervisor"
)

// Named defaults: every wait of the daemon is bounded by one of these.
const (
	// DefaultShutdownGrace is how long in-flight calls may run on once
	// shutdown has begun, before they are cancelled.
	DefaultShutdownGrace = 10 * time.Second
	// helloTimeout bounds a new connection's TLS handshake and hello.
	helloTimeout = 10 * time.Second
	// writeTimeout bounds one write to a client: a client that stops
	// reading would otherwise stall the worker whose output it is sent.
	writeTimeout = 30 * time.Second
	// statsTimeout bounds the wait for one worker's resource figures in a
	// listing.
	statsTimeout = time.Second
	// answerWait bounds the wait, at shutdown, for the answers of calls
	// that have returned to be written to their clients.
	answerWait = 2 * time.Second
	// maxHelloBytes bounds the first frame of a connection, read before
	// the client is admitted.
	maxHelloBytes = 64 << 10
	// liveProbeTimeout bounds the dial that tells a live daemon's socket
	// from a stale one.
	liveProbeTimeout = time.Second
)

// Config configures a daemon. The zero value serves the default Unix
// socket with no TCP listener and no metrics, logging nowhere.
type Config struct {
	// Socket is the Unix socket path; empty means DefaultSocket().
	Socket string
	// Listen is a TCP host:port to serve as well; empty means none. TCP
	// needs TokenFile and TLS.
	Listen string
	// TokenFile holds the token TCP clients and the status page's actions
	// must present (surrounding whitespace ignored). Unix socket clients
	// need none.
	TokenFile string
	// TLS is the server configuration of the TCP listener.
	TLS *tls.Config
	// AllowUIDs are users besides the daemon's own that may connect to the
	// Unix socket. Without any the socket has mode 0600; with some it has
	// mode 0666 so they can reach it, and each connection's user (from
	// SO_PEERCRED) is checked instead. They must also be able to reach the
	// socket's directory.
	AllowUIDs []int
	// Logger receives the daemon's logs; nil discards them.
	Logger hclog.Logger
	// MetricsAddr is a host:port to serve Prometheus metrics on at
	// /metrics; empty means none.
	MetricsAddr string
	// HTTPAddr is a host:port to serve the status page on; empty means
	// none. Without TLS it must be a loopback address. Its actions (close,
	// restart) need the token of TokenFile; without one the page is
	// read-only. Equal to MetricsAddr, one listener serves both.
	HTTPAddr string
	// Node is the name of the cluster node this daemon is, which its status
	// page shows beside each interpreter; empty outside a cluster.
	Node string
	// ShutdownGrace is how long in-flight calls may run on at shutdown
	// before they are cancelled; 0 means DefaultShutdownGrace, and a
	// negative value none: they are cancelled at once.
	ShutdownGrace time.Duration
	// Supervisor configures the daemon's supervisor: the worker binary,
	// kill grace and default limits. Its Logger defaults to the daemon's;
	// its Stdout is the daemon's own (output not sent to a caller is
	// logged at debug level).
	Supervisor supervisor.Config
}

// DefaultSocket is the per-user socket path the daemon and the CLI agree
// on: $XDG_RUNTIME_DIR/subinterp.sock, else /tmp/subinterp-$UID/subinterp.sock.
func DefaultSocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "subinterp.sock")
	}
	return filepath.Join(defaultSocketDir(), "subinterp.sock")
}

func defaultSocketDir() string {
	return filepath.Join("/tmp", fmt.Sprintf("subinterp-%d", os.Getuid()))
}

// withDefaults returns a copy of c with its defaults filled in; the
// caller's Config is never written.
func (c Config) withDefaults() Config {
	if c.Socket == "" {
		c.Socket = DefaultSocket()
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Supervisor.Logger == nil {
		c.Supervisor.Logger = c.Logger.Named("supervisor")
	}
	c.AllowUIDs = append([]int(nil), c.AllowUIDs...)
	return c
}
