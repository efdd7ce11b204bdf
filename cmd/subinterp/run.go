package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newRunCommand(g *clientFlags) *cobra.Command {
	var interp interpFlags
	cmd := &cobra.Command{
		Use:   "run FILE.lua",
		Short: "Run a Lua script in a fresh interpreter, no daemon needed",
		Long: `Run a Lua script in a fresh interpreter in its own worker process and
stream its output. FILE "-" reads the script from stdin. A first line
starting with "#" (a shebang) is skipped, as lua does, and so is a UTF-8
byte order mark.

On failure the formatted Lua error and traceback go to stderr and the exit
code is 1. os.exit(n) ends the script with exit code n (os.exit() and
os.exit(true): 0, os.exit(false): 1). Ctrl-C interrupts the script (exit
code 130); a second Ctrl-C ends subinterp at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, done := g.commandContext(cmd, os.Interrupt, syscall.SIGTERM)
			defer done()
			src, err := readScript(ctx, args[0], cmd.InOrStdin())
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			opts := append(interp.options(), interpreters.WithStdout(cmd.OutOrStdout()))
			return runScript(ctx, chunkName(args[0]), src, cmd.ErrOrStderr(), opts)
		},
	}
	f := cmd.Flags()
	interp.register(f)
	g.addTimeoutFlag(f)
	return cmd
}

// readScript reads a Lua file, "-" meaning stdin, as lua would load it: a
// UTF-8 byte order mark is dropped, and a first line starting with "#" (a
// shebang) is emptied, its newline kept so that line numbers stay right.
func readScript(ctx context.Context, path string, stdin io.Reader) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = readAll(ctx, stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", err
	}
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	if len(b) > 0 && b[0] == '#' {
		if nl := bytes.IndexByte(b, '\n'); nl >= 0 {
			b = b[nl:]
		} else {
			b = nil
		}
	}
	return string(b), nil
}

// chunkName is what errors and tracebacks call the script at path, as lua
// calls it: the path as given, "stdin" for "-".
func chunkName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// runScript runs src, named name, in a fresh interpreter of its own
// runtime until ctx ends, which interrupts the script; the runtime kills a
// worker that does not stop.
func runScript(ctx context.Context, name, src string, stderr io.Writer, opts []interpreters.Option) error {
	rt := interpreters.New()
	defer rt.Close()
	interp, err := rt.CreateContext(ctx, opts...)
	if err != nil {
		return err
	}
	err = interp.ExecNamed(ctx, name, src)
	var ef *interpreters.ExecutionFailed
	if !errors.As(err, &ef) {
		return err
	}
	if ef.Type == "SystemExit" {
		return systemExit(ef.Msg, stderr)
	}
	printFailure(stderr, ef)
	return &exitError{code: exitFailure}
}

// systemExit ends run with the status the script gave os.exit: the
// interpreter raises SystemExit with it as the message ("0" for none or
// true, "1" for false). Anything else is a message, printed, with status
// 1, as CPython does with sys.exit("message").
func systemExit(msg string, stderr io.Writer) error {
	n, err := strconv.Atoi(msg)
	if err != nil {
		fmt.Fprintln(stderr, msg)
		return &exitError{code: exitFailure}
	}
	if n == 0 {
		return nil
	}
	return &exitError{code: n & 0xff} // the status the shell sees
}
