package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// envPrefix prefixes the environment form of every flag.
const envPrefix = "SUBINTERP_"

// clientFlags select and reach the daemon; they are global, so every
// command (serve included) agrees on the socket.
type clientFlags struct {
	socket    string
	tokenFile string
	tlsCA     string
	timeout   time.Duration
	debug     bool
}

func addClientFlags(root *cobra.Command, g *clientFlags) {
	f := root.PersistentFlags()
	f.StringVar(&g.socket, "socket", daemon.DefaultSocket(),
		"the daemon's address: a Unix socket path, unix://PATH or tcp://HOST:PORT\n(default per user: $XDG_RUNTIME_DIR/subinterp.sock, else /tmp/subinterp-$UID/subinterp.sock)")
	f.StringVar(&g.tokenFile, "token-file", "", "file holding the token TCP clients present (serve: the token they must present)")
	f.StringVar(&g.tlsCA, "tls-ca", "", "PEM file of the CA that signed the daemon's certificate, for tcp:// addresses (default: system roots)")
	f.DurationVar(&g.timeout, "timeout", 0, "give up on the command after this long (0: never)")
	f.BoolVar(&g.debug, "debug", false, "print the effective settings, with their environment names, to stderr")
}

// preRun binds every flag not given on the command line to its
// SUBINTERP_<FLAG> environment variable, in one place for every command.
func (g *clientFlags) preRun(cmd *cobra.Command, _ []string) error {
	var bad error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" || bad != nil {
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
			if f.Name != "help" {
				fmt.Fprintf(w, "%s=%s\n", envName(f.Name), f.Value.String())
			}
		})
	}
	return nil
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// commandContext is the context of one control command: it ends on one of
// sigs or --timeout.
func (g *clientFlags) commandContext(cmd *cobra.Command, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, sigs...)
	if g.timeout <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	return ctx, func() { cancel(); stop() }
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
	rt, err = interpreters.Dial(ctx, addr, opts...)
	if err != nil {
		switch {
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
// error prints its formatted message and traceback and exits 1; an
// interrupted call exits 130; anything else goes up with its own code.
func scriptError(cmd *cobra.Command, err error) error {
	var ef *interpreters.ExecutionFailed
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ef):
		fmt.Fprintln(cmd.ErrOrStderr(), ef.Error())
		return &exitError{code: exitFailure}
	case errors.Is(err, context.Canceled):
		return &exitError{code: exitInterrupted, err: errors.New("interrupted")}
	}
	return err
}
