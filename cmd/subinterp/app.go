package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

// Exit codes. Each failure a script or an operator must tell apart has its
// own.
const (
	exitOK          = 0
	exitFailure     = 1   // the script failed, or the command did
	exitUsage       = 2   // bad flags or arguments
	exitNotFound    = 3   // no such interpreter or queue
	exitUnavailable = 69  // the daemon is not running (EX_UNAVAILABLE)
	exitNoPerm      = 77  // the daemon refused this user or token, or failed TLS verification (EX_NOPERM)
	exitInterrupted = 130 // stopped by SIGINT (128 + 2)
	exitTerminated  = 143 // stopped by SIGTERM (128 + 15)
)

// exitError carries an exit code through cobra to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// Version is the subinterp version, set at link time with
// -ldflags "-X main.Version=...".
var Version = "dev"

// newApp builds the command tree around g, the settings its commands
// share. stdout and stderr are parameters so tests can run commands
// in-process.
func newApp(g *clientFlags, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "subinterp",
		Short: "Run Lua scripts in isolated interpreters, one worker process each",
		Long: `Run Lua scripts in isolated interpreters, each a Lua VM in its own worker
process: "subinterp run" with no daemon, or a supervisor daemon ("subinterp
serve") that keeps interpreters alive between commands, driven by create,
exec, call, ls, close, queue and repl.

The daemon's socket is $XDG_RUNTIME_DIR/subinterp.sock, else
/tmp/subinterp-$UID/subinterp.sock; --socket on each command names another.
The settings that say where the daemon is and how to reach it can also come
from the environment, a flag on the command line winning: SUBINTERP_SOCKET,
SUBINTERP_TOKEN_FILE, SUBINTERP_TLS_CA, SUBINTERP_TIMEOUT, SUBINTERP_DEBUG.

Exit codes: 0 ok, 1 the script or command failed or timed out, 2 bad usage,
3 no such interpreter or queue, 69 no daemon running, 77 refused by the
daemon or its TLS certificate failed verification, 130 interrupted by
SIGINT, 143 by SIGTERM; run exits with the status a script gives os.exit.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentPreRunE = g.preRun
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.addDebugFlag(root)
	root.AddCommand(newRunCommand(g), newVersionCommand(), newServeCommand(g),
		newCreateCommand(g), newLsCommand(g), newNodesCommand(g), newExecCommand(g), newCallCommand(g),
		newCloseCommand(g), newQueueCommand(g), newReplCommand(g))
	return root
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	return execute(args, os.Stdin, os.Stdout, os.Stderr)
}

// execute runs the CLI on the given streams and returns the exit code.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &clientFlags{}
	app := newApp(g, stdout, stderr)
	app.SetIn(stdin)
	app.SetArgs(args)
	err := app.Execute()
	if err == nil {
		return exitOK
	}
	// A command cut short reports why, not what the call it cut short
	// said about it ("queue 1 is empty", "context canceled").
	if se := g.stopped(); se != nil {
		err = se
	}
	var se *stopError
	if errors.As(err, &se) {
		fmt.Fprintln(stderr, "subinterp:", se)
		return se.code
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "subinterp:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "subinterp:", err)
	if isUsageError(err) {
		return exitUsage
	}
	return codeFor(err)
}

// codeFor picks the exit code of an error from the interpreters package.
func codeFor(err error) int {
	switch {
	case errors.Is(err, interpreters.ErrInterpreterNotFound), errors.Is(err, interpreters.ErrQueueNotFound):
		return exitNotFound
	case errors.Is(err, interpreters.ErrUnavailable):
		return exitUnavailable
	case errors.Is(err, interpreters.ErrPermissionDenied):
		return exitNoPerm
	case errors.Is(err, interpreters.ErrInvalidArgument):
		return exitUsage
	}
	return exitFailure
}

// isUsageError recognises cobra's argument and flag errors, which it does
// not type.
func isUsageError(err error) bool {
	var fe interface{ Flag() string }
	if errors.As(err, &fe) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires ", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
