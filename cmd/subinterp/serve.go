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
		logFormat     string
		logLevel      string
		shutdownGrace time.Duration
		killGrace     time.Duration
		warmSpares    int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the supervisor daemon that keeps interpreters between commands",
		Long: `Run the supervisor daemon in the foreground. Interpreters created through it
(subinterp create, interpreters.Dial) live until they are closed or the
daemon stops, whichever connection made them.

The daemon listens on a Unix socket (--socket, mode 0600) and admits only
its own user and those given with --allow-uid. With --listen it also
serves TCP, which needs TLS (--tls-cert, --tls-key) and a token
(--token-file) that clients present.

SIGTERM or SIGINT stops it: no new connections or calls, in-flight calls
get --shutdown-grace to finish and are then cancelled, every interpreter is
closed and the socket removed; the exit code is then 0.`,
		Example: `  subinterp serve &
  subinterp serve --socket /run/subinterp.sock --allow-uid 1001 --metrics-addr 127.0.0.1:9464
  subinterp serve --listen :7878 --tls-cert cert.pem --tls-key key.pem --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
				ShutdownGrace: shutdownGrace,
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
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Serve(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "also serve TCP on this host:port (needs --tls-cert, --tls-key and --token-file)")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate of the TCP listener")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key of the TCP listener")
	f.IntSliceVar(&allowUIDs, "allow-uid", nil, "users besides the daemon's own that may use the Unix socket (repeatable)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this host:port at /metrics")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	f.DurationVar(&shutdownGrace, "shutdown-grace", daemon.DefaultShutdownGrace, "how long in-flight calls may finish at shutdown before they are cancelled")
	f.DurationVar(&killGrace, "kill-grace", supervisor.DefaultKillGrace, "how long a cancelled call may take to stop before its worker is killed")
	f.IntVar(&warmSpares, "warm-spares", 0, "worker processes kept started ahead of need, so create answers at once")
	return cmd
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
