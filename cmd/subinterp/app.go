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
	exitInterrupted = 130 // stopped by SIGINT
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

// newApp builds the command tree. stdout and stderr are parameters so tests
// can run commands in-process.
func newApp(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "subinterp",
		Short:         "Run Lua scripts in isolated interpreters, one worker process each",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCommand(), newVersionCommand())
	return root
}

// Main runs the CLI with args and returns the process exit code.
func Main(args []string) int {
	app := newApp(os.Stdout, os.Stderr)
	app.SetArgs(args)
	err := app.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "subinterp:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "subinterp:", err)
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
