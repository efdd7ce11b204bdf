package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// envPrefix prefixes the environment form of the settings that have one.
const envPrefix = "SUBINTERP_"

// envAnnotation marks a flag that its SUBINTERP_<FLAG> environment
// variable may set: only the settings that say where the daemon is and
// how to reach it, never a command's own input (the code of exec -e).
const envAnnotation = "subinterp_env"

// clientFlags select and reach the daemon. Each command registers the ones
// it uses, so that none lists a flag it would ignore; they share one set
// of variables, so every command (serve included) agrees on the socket.
type clientFlags struct {
	socket    string
	tokenFile string
	tlsCA     string
	cluster   string
	creds     string
	timeout   time.Duration
	debug     bool

	// ctx is the context commandContext gave the command, for Main to
	// tell why it ended.
	ctx context.Context
}

// addDebugFlag registers --debug on the root, for every command.
func (g *clientFlags) addDebugFlag(root *cobra.Command) {
	f := root.PersistentFlags()
	f.BoolVar(&g.debug, "debug", false, "print the effective settings, with their environment names, to stderr")
	bindEnv(f, "debug")
}

// addControlFlags registers what a control command needs to reach the
// daemon: --socket, --token-file, --tls-ca and --timeout.
func (g *clientFlags) addControlFlags(f *pflag.FlagSet) {
	g.addSocketFlag(f, "the daemon's address: a Unix socket path, unix://PATH or tcp://HOST:PORT, or a cluster's nats://HOST:PORT\n(default per user: $XDG_RUNTIME_DIR/subinterp.sock, else /tmp/subinterp-$UID/subinterp.sock)")
	g.addTokenFileFlag(f, "file holding the token to present to a daemon on tcp://, or to a cluster's NATS")
	f.StringVar(&g.tlsCA, "tls-ca", "", "PEM file of the CA that signed the daemon's certificate, for tcp:// addresses, or the NATS servers' (default: system roots)")
	bindEnv(f, "tls-ca")
	f.StringVar(&g.cluster, "cluster", "subinterp", "the cluster's name, with a nats:// address")
	bindEnv(f, "cluster")
	f.StringVar(&g.creds, "creds", "", "NATS credentials file to present to a cluster, with a nats:// address")
	bindEnv(f, "creds")
	g.addTimeoutFlag(f)
}

func (g *clientFlags) addSocketFlag(f *pflag.FlagSet, usage string) {
	f.StringVar(&g.socket, "socket", daemon.DefaultSocket(), usage)
	bindEnv(f, "socket")
}

func (g *clientFlags) addTokenFileFlag(f *pflag.FlagSet, usage string) {
	f.StringVar(&g.tokenFile, "token-file", "", usage)
	bindEnv(f, "token-file")
}

// addTimeoutFlag registers --timeout: for every command that has it, how
// long the whole command may take, Lua code and all.
func (g *clientFlags) addTimeoutFlag(f *pflag.FlagSet) {
	f.DurationVar(&g.timeout, "timeout", 0, "give up on the command after this long, stopping any Lua code it runs (0: never)")
	bindEnv(f, "timeout")
}

// bindEnv lets SUBINTERP_<FLAG> set the flag name of f.
func bindEnv(f *pflag.FlagSet, name string) {
	if err := f.SetAnnotation(name, envAnnotation, []string{envName(name)}); err != nil {
		panic(err) // a flag registered just before: a bug if missing
	}
}

// preRun sets every environment-bound flag not given on the command line
// from its SUBINTERP_<FLAG> variable, in one place for every command.
func (g *clientFlags) preRun(cmd *cobra.Command, _ []string) error {
	var bad error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Annotations[envAnnotation] == nil || bad != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				bad = &exitError{code: exitUsage, err: fmt.Errorf("%s=%q: %v", envName(f.Name), v, err)}
			}
		}
	})
	if bad != nil {
		return bad
	}
	if g.debug {
		w := cmd.ErrOrStderr()
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			switch {
			case f.Name == "help":
			case f.Annotations[envAnnotation] != nil:
				fmt.Fprintf(w, "%s=%s\n", envName(f.Name), f.Value.String())
			default:
				fmt.Fprintf(w, "--%s=%s\n", f.Name, f.Value.String())
			}
		})
	}
	return nil
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// connect is the one way a control command reaches the daemon: it returns
// the command's context and a runtime on the daemon, whose calls write
// their output to the command's stdout. done releases both.
func (g *clientFlags) connect(cmd *cobra.Command) (ctx context.Context, rt *interpreters.Runtime, done func(), err error) {
	return g.connectCatching(cmd, os.Interrupt, syscall.SIGTERM)
}

// connectCatching is connect with a context that ends on sigs.
func (g *clientFlags) connectCatching(cmd *cobra.Command, sigs ...os.Signal) (ctx context.Context, rt *interpreters.Runtime, done func(), err error) {
	ctx, cancel := g.commandContext(cmd, sigs...)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	addr := g.socket
	network, address, err := interpreters.ParseAddr(addr)
	if err != nil {
		return nil, nil, nil, &exitError{code: exitUsage, err: err}
	}
	opts := []interpreters.Option{interpreters.WithStdout(cmd.OutOrStdout())}
	if network == "unix" {
		// A missing socket says more, sooner, than a failed dial.
		if _, err := os.Stat(address); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, nil, notRunning(addr, "no socket there")
			}
			return nil, nil, nil, &exitError{code: exitUnavailable, err: fmt.Errorf("cannot access socket %s: %v", address, err)}
		}
	} else {
		if g.tokenFile != "" {
			b, err := os.ReadFile(g.tokenFile)
			if err != nil {
				return nil, nil, nil, &exitError{code: exitUsage, err: fmt.Errorf("read token file: %v", err)}
			}
			opts = append(opts, interpreters.WithToken(strings.TrimSpace(string(b))))
		}
		if g.tlsCA != "" {
			pem, err := os.ReadFile(g.tlsCA)
			if err != nil {
				return nil, nil, nil, &exitError{code: exitUsage, err: fmt.Errorf("read --tls-ca: %v", err)}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, nil, &exitError{code: exitUsage, err: fmt.Errorf("--tls-ca %s holds no PEM certificate", g.tlsCA)}
			}
			opts = append(opts, interpreters.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
		}
	}
	if network == "nats" {
		opts = append(opts, interpreters.WithCluster(g.cluster))
		if g.creds != "" {
			opts = append(opts, interpreters.WithCredentials(g.creds))
		}
	}
	rt, err = dial(ctx, addr, opts)
	if err != nil {
		var badCert *tls.CertificateVerificationError
		switch {
		case errors.As(err, &badCert):
			// The daemon answered: it is no missing daemon, but one this
			// client may not trust, which is an authentication failure.
			return nil, nil, nil, &exitError{code: exitNoPerm, err: fmt.Errorf(
				"TLS verification of the daemon at %s failed: %v\ngive the CA that signed its certificate with --tls-ca (SUBINTERP_TLS_CA)", addr, badCert.Err)}
		case errors.Is(err, interpreters.ErrPermissionDenied):
			return nil, nil, nil, &exitError{code: exitNoPerm, err: err}
		case errors.Is(err, interpreters.ErrUnavailable) && errors.Is(err, fs.ErrPermission):
			return nil, nil, nil, &exitError{code: exitNoPerm, err: fmt.Errorf(
				"%v\nthe socket belongs to another user; a daemon of your own starts with `subinterp serve`", err)}
		case errors.Is(err, interpreters.ErrUnavailable):
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
				return nil, nil, nil, notRunning(addr, "nothing answers there")
			}
			return nil, nil, nil, &exitError{code: exitUnavailable, err: err}
		}
		return nil, nil, nil, err
	}
	return ctx, rt, func() { _ = rt.Close(); cancel() }, nil
}

// dial is interpreters.Dial that returns as soon as ctx ends: Dial's hello
// heeds only ctx's deadline, so a daemon that accepts and never answers
// would hold a signal up until it passed. A runtime that connects after
// all is closed.
func dial(ctx context.Context, addr string, opts []interpreters.Option) (*interpreters.Runtime, error) {
	type result struct {
		rt  *interpreters.Runtime
		err error
	}
	dialed := make(chan result, 1)
	go func() {
		rt, err := interpreters.Dial(ctx, addr, opts...)
		dialed <- result{rt, err}
	}()
	select {
	case r := <-dialed:
		return r.rt, r.err
	case <-ctx.Done():
		go func() {
			if r := <-dialed; r.rt != nil {
				_ = r.rt.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

func notRunning(addr, why string) error {
	return &exitError{code: exitUnavailable, err: fmt.Errorf(
		"no subinterp daemon is running at %s (%s); start one with `subinterp serve`, or point --socket (SUBINTERP_SOCKET) at a running one", addr, why)}
}

// lookup returns the daemon's interpreter named by a command argument.
func lookup(rt *interpreters.Runtime, arg string) (*interpreters.Interpreter, error) {
	id, err := parseID(arg, "interpreter")
	if err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, &exitError{code: exitUsage, err: errors.New("interpreter 0 is the main interpreter: the client itself, not one of the daemon's")}
	}
	return rt.Lookup(id)
}

func parseID(arg, what string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id < 0 {
		return 0, &exitError{code: exitUsage, err: fmt.Errorf("%s ID %q is not a non-negative integer", what, arg)}
	}
	return id, nil
}

// scriptError reports a failed call the way `run` does: an uncaught Lua
// error prints its formatted message and traceback and exits 1; anything
// else goes up with its own code (an interrupted or timed-out call is
// reported by Main, from the command's context).
func scriptError(cmd *cobra.Command, err error) error {
	var ef *interpreters.ExecutionFailed
	if errors.As(err, &ef) {
		printFailure(cmd.ErrOrStderr(), ef)
		return &exitError{code: exitFailure}
	}
	return err
}

// printFailure writes an uncaught Lua error: its formatted message, then
// the interpreter's traceback or source pointer under a header, when there
// is one that says more than the message (a MemoryError has none, and a
// SyntaxError's display ends with its message again).
func printFailure(w io.Writer, ef *interpreters.ExecutionFailed) {
	fmt.Fprintln(w, ef.Formatted)
	display := strings.TrimRight(ef.Errdisplay, " \t\r\n")
	display = strings.TrimRight(strings.TrimSuffix(display, ef.Formatted), " \t\r\n")
	if strings.TrimSpace(display) == "" {
		return
	}
	fmt.Fprintf(w, "\nUncaught in the interpreter:\n\n%s\n", display)
}
