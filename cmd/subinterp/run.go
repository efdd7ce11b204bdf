package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newRunCommand() *cobra.Command {
	var (
		interp  interpFlags
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run FILE.lua",
		Short: "Run a Lua script in a fresh interpreter, no daemon needed",
		Long: `Run a Lua script in a fresh interpreter in its own worker process and
stream its output. FILE "-" reads the script from stdin. On failure the
formatted Lua error and traceback go to stderr and the exit code is 1.
Ctrl-C interrupts the script (exit code 130).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := readScript(args[0], cmd.InOrStdin())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			opts := append(interp.options(), interpreters.WithStdout(cmd.OutOrStdout()))
			return runScript(cmd.Context(), src, timeout, cmd.ErrOrStderr(), opts)
		},
	}
	f := cmd.Flags()
	interp.register(f)
	f.DurationVar(&timeout, "timeout", 0, "wall-clock limit for the script (0: none)")
	return cmd
}

func readScript(path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	return string(b), err
}

// runScript runs src in a fresh interpreter of its own runtime. The first
// SIGINT interrupts the script; the runtime kills a worker that does not
// stop.
func runScript(parent context.Context, src string, timeout time.Duration, stderr io.Writer, opts []interpreters.Option) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	rt := interpreters.New()
	defer rt.Close()
	interp, err := rt.Create(opts...)
	if err != nil {
		return err
	}
	err = interp.ExecContext(ctx, src)
	var ef *interpreters.ExecutionFailed
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ef):
		fmt.Fprintln(stderr, ef.Error())
		return &exitError{code: exitFailure}
	case errors.Is(err, context.Canceled):
		return &exitError{code: exitInterrupted, err: errors.New("interrupted")}
	}
	return err
}
