package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/supervisor"
)

func newServeCommand(g *clientFlags) *cobra.Command {
	var (
		listen        string
		tlsCert       string
		tlsKey        string
		allowUIDs     []int
		metricsAddr   string
		httpAddr      string
		logFormat     string
		logLevel      string
		shutdownGrace time.Duration
		killGrace     time.Duration
		warmSpares    int
		cf            clusterFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the supervisor daemon that keeps interpreters between commands",
		Long: `Run the supervisor daemon in the foreground. Interpreters created through it
(subinterp create, interpreters.Dial) live until they are closed or the
daemon stops, whichever connection made them.

The daemon listens on a Unix socket (--socket) and admits only its own user
and those given with --allow-uid. Without --allow-uid the socket has mode
0600. With it the socket has mode 0666, so that those users can reach it
(they must also be able to reach its directory), and each connection's
user is checked with SO_PEERCRED instead. An allowed user acts with the
daemon's own privileges: their scripts run as the daemon's user (with
--stdlib on create they can read its files and run programs), and they can
drive and close every interpreter of the daemon, not only their own. Allow
only users you would let run code as the daemon's user.

With --listen it also serves TCP, which needs TLS (--tls-cert, --tls-key)
and a token (--token-file) that clients present.

With --http-addr it serves a status page: every interpreter with its pid,
state, uptime, calls, memory, CPU, restarts and limits; the queues; the
recent worker exits with their cause and stderr; updated live. Without
TLS the address must be loopback (127.0.0.1, [::1] or localhost). Its
buttons close an interpreter or restart one that has a restart policy;
they need the --token-file token, entered on the page (or given in the
address as #token=...). Without --token-file the page is read-only. It may
share --metrics-addr's address.

Workers get none of the
daemon's environment: in an interpreter created with --stdlib, os.getenv
sees none of its variables (only TMPDIR is passed on).

SIGTERM, SIGINT or SIGHUP shuts it down gracefully: no new connections or
calls, in-flight calls get --shutdown-grace to finish and are then
cancelled, every interpreter is closed and the socket removed; the exit
code is then 0. A second signal during the shutdown cancels the calls still
in flight at once.`,
		Example: `  subinterp serve &
  subinterp serve --socket /run/subinterp.sock --allow-uid 1001 --metrics-addr 127.0.0.1:9464
  subinterp serve --http-addr 127.0.0.1:8080 --token-file token
  subinterp serve --listen :7878 --tls-cert cert.pem --tls-key key.pem --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkServeFlags(shutdownGrace, killGrace, warmSpares); err != nil {
				return err
			}
			logger, err := newLogger(cmd, logFormat, logLevel)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg := daemon.Config{
				Socket:        g.socket,
				Listen:        listen,
				TokenFile:     g.tokenFile,
				AllowUIDs:     allowUIDs,
				Logger:        logger,
				MetricsAddr:   metricsAddr,
				HTTPAddr:      httpAddr,
				ShutdownGrace: shutdownGraceConfig(shutdownGrace),
				Supervisor:    supervisor.Config{KillGrace: killGrace, WarmSpares: warmSpares},
			}
			if (tlsCert == "") != (tlsKey == "") {
				return &exitError{code: exitUsage, err: errors.New("--tls-cert and --tls-key go together")}
			}
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return &exitError{code: exitUsage, err: fmt.Errorf("load TLS certificate: %v", err)}
				}
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			n, err := cf.join(g, &cfg, logger)
			if err != nil {
				return err
			}
			if n != nil {
				cfg.Logger = logger.With("node", n.Name())
				cfg.Node = n.Name()
				cfg.Supervisor.NextID = n.NextID
				cfg.Supervisor.Queues = n.Queues()
				cfg.Supervisor.Peers = n.Peers()
				defer n.Close()
			}
			err = serve(cmd.Context(), cfg, n, logger)
			if errors.Is(err, daemon.ErrStatusNotLoopback) {
				return &exitError{code: exitUsage, err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	g.addSocketFlag(f, "the Unix socket to serve, mode 0600 (0666 with --allow-uid)\n(default per user: $XDG_RUNTIME_DIR/subinterp.sock, else /tmp/subinterp-$UID/subinterp.sock)")
	g.addTokenFileFlag(f, "file holding the token TCP clients (--listen) and the status page's actions (--http-addr) need")
	f.StringVar(&listen, "listen", "", "also serve TCP on this host:port (needs --tls-cert, --tls-key and --token-file)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate of the TCP listener")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of the TCP listener")
	f.IntSliceVar(&allowUIDs, "allow-uid", nil, "users besides the daemon's own that may use the Unix socket, with the daemon's privileges over all its interpreters (repeatable)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this host:port at /metrics")
	f.StringVar(&httpAddr, "http-addr", "", "serve the status page on this host:port (loopback unless TLS is given; actions need --token-file)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	f.DurationVar(&shutdownGrace, "shutdown-grace", daemon.DefaultShutdownGrace, "how long in-flight calls may finish at shutdown before they are cancelled (0: no grace, cancel them at once)")
	f.DurationVar(&killGrace, "kill-grace", supervisor.DefaultKillGrace, "how long a cancelled call may take to stop before its worker is killed")
	f.IntVar(&warmSpares, "warm-spares", 0, "worker processes kept started ahead of need, so create answers at once")
	cf.addFlags(f, g)
	return cmd
}

// checkServeFlags refuses the settings that have no meaning, rather than
// let the daemon read them as its defaults.
func checkServeFlags(shutdownGrace, killGrace time.Duration, warmSpares int) error {
	switch {
	case shutdownGrace < 0:
		return &exitError{code: exitUsage, err: fmt.Errorf("--shutdown-grace %v: want 0 (no grace) or more", shutdownGrace)}
	case killGrace < 0:
		return &exitError{code: exitUsage, err: fmt.Errorf("--kill-grace %v: want 0 (the default, %v) or more", killGrace, supervisor.DefaultKillGrace)}
	case warmSpares < 0:
		return &exitError{code: exitUsage, err: fmt.Errorf("--warm-spares %d: want 0 or more", warmSpares)}
	}
	return nil
}

// shutdownGraceConfig maps --shutdown-grace to daemon.Config.ShutdownGrace:
// on the command line 0 means no grace, which the Config spells as a
// negative value (its 0 means the default).
func shutdownGraceConfig(flag time.Duration) time.Duration {
	if flag == 0 {
		return -1
	}
	return flag
}

// shutdownSignals shut the daemon down. SIGHUP is one of them: a daemon
// whose terminal goes away must still close its interpreters and remove
// its socket, not die where it stands.
var shutdownSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// serve runs the daemon until the first shutdown signal, then shuts it
// down; a second signal forces the stop.
func serve(parent context.Context, cfg daemon.Config, n *node.Node, log hclog.Logger) error {
	if parent == nil {
		parent = context.Background()
	}
	// Caught before Listen: a signal that arrives while the supervisor
	// starts still gets a clean shutdown.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, shutdownSignals...)
	defer signal.Stop(sigs)
	srv, err := daemon.Listen(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	served := make(chan struct{})
	defer close(served)
	go stopOnSignals(sigs, served, cancel, srv.Abort, log)
	if n == nil {
		return srv.Serve(ctx)
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Serve(ctx, srv) }()
	err = srv.Serve(ctx)
	cancel()
	if nerr := <-nodeDone; err == nil {
		err = nerr
	}
	return err
}

// stopOnSignals starts a graceful shutdown on the first signal and forces
// it (abort: calls in flight are cancelled at once) on the second. It
// returns when done is closed.
func stopOnSignals(sigs <-chan os.Signal, done <-chan struct{}, shutdown, abort func(), log hclog.Logger) {
	for first := true; ; first = false {
		select {
		case sig := <-sigs:
			if !first {
				log.Warn("second signal: forcing the shutdown", "signal", sig.String())
				abort()
				return
			}
			log.Info("signal received: shutting down; another signal forces it", "signal", sig.String())
			shutdown()
		case <-done:
			return
		}
	}
}

func newLogger(cmd *cobra.Command, format, level string) (hclog.Logger, error) {
	var jsonFormat bool
	switch format {
	case "text":
	case "json":
		jsonFormat = true
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "subinterp",
		Level:      lvl,
		Output:     cmd.ErrOrStderr(),
		JSONFormat: jsonFormat,
	}), nil
}
