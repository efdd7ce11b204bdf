package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/yuin/gopher-lua/parse"

	"github.com/subinterp/subinterp/interpreters"
)

func newReplCommand(g *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "repl ID",
		Short: "Read-eval-print loop on one of the daemon's interpreters",
		Long: `Read Lua from stdin a chunk at a time and run it in the interpreter. A line
that leaves a chunk unfinished (an open block, string or call) asks for
more. An expression prints its value as JSON; a statement runs as Exec.
Errors are printed and the loop goes on; the interpreter keeps its globals
(locals last one chunk, as in the Lua REPL). Ctrl-C interrupts a running
chunk; at the prompt, Ctrl-C or end of input ends the loop.

Piped input works too: no prompt is shown, and the exit code is 1 if any
chunk failed.`,
		Example: `  subinterp repl 1
  printf 'x = 6\nx * 7\n' | subinterp repl 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Ctrl-C belongs to the loop (it interrupts a chunk), not to
			// the command's context.
			ctx, rt, done, err := g.connectCatching(cmd, syscall.SIGTERM)
			if err != nil {
				return err
			}
			defer done()
			it, err := lookup(rt, args[0])
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			r := &repl{
				ctx:         ctx,
				it:          it,
				out:         cmd.OutOrStdout(),
				errOut:      cmd.ErrOrStderr(),
				interactive: isTerminal(in),
			}
			return r.run(in)
		},
	}
}

// isTerminal reports whether r is a character device: a prompt is shown
// only to a person.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

type repl struct {
	ctx         context.Context // the command's: its end ends the loop
	it          *interpreters.Interpreter
	out, errOut io.Writer
	interactive bool
	failed      bool
}

func (r *repl) prompt(more bool) {
	if !r.interactive {
		return
	}
	if more {
		fmt.Fprint(r.out, ">> ")
	} else {
		fmt.Fprintf(r.out, "%d> ", r.it.ID())
	}
}

// run reads lines on a goroutine of their own, so the loop can watch for
// Ctrl-C while a chunk runs and while it waits for input.
func (r *repl) run(in io.Reader) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		br := bufio.NewReader(in)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				select {
				case lines <- line:
				case <-quit:
					return
				}
			}
			if err != nil {
				readErr <- err
				close(lines)
				return
			}
		}
	}()
	// SIGINT is handled per chunk below; the command's own context would
	// otherwise end the whole loop on the first Ctrl-C.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)

	var chunk strings.Builder
	r.prompt(false)
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-sigs:
			if r.interactive {
				fmt.Fprintln(r.out)
			}
			return &exitError{code: exitInterrupted}
		case <-r.ctx.Done():
			return r.end(r.ctx.Err())
		}
		if !ok {
			if err := <-readErr; !errors.Is(err, io.EOF) {
				return err
			}
			if strings.TrimSpace(chunk.String()) != "" {
				r.eval(chunk.String(), sigs) // an unfinished chunk gets its syntax error
			}
			if r.interactive {
				fmt.Fprintln(r.out)
			}
			return r.end(nil)
		}
		chunk.WriteString(line)
		src := chunk.String()
		if strings.TrimSpace(src) == "" {
			chunk.Reset()
			r.prompt(false)
			continue
		}
		if incomplete(src) {
			r.prompt(true)
			continue
		}
		chunk.Reset()
		r.eval(src, sigs)
		if r.ctx.Err() != nil {
			return r.end(r.ctx.Err())
		}
		r.prompt(false)
	}
}

func (r *repl) end(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &exitError{code: exitFailure, err: errors.New("timed out")}
	case err != nil:
		return &exitError{code: exitInterrupted}
	case r.failed && !r.interactive:
		return &exitError{code: exitFailure}
	}
	return nil
}

// eval runs one chunk: as an expression whose value is printed if it
// parses as one, else as a statement. Ctrl-C cancels it.
func (r *repl) eval(src string, sigs <-chan os.Signal) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-stop:
		}
	}()
	expr := strings.TrimSpace(src)
	expr = strings.TrimPrefix(expr, "=") // Lua 5.1's "=expr"
	body := ""
	switch {
	case parses("return " + expr):
		body = "return " + expr
	case strings.HasPrefix(expr, "return") && parses(expr):
		body = expr // a chunk that returns: its values are printed too
	}
	if body != "" {
		res, err := r.it.CallContext(ctx, "function() "+body+"\nend")
		if err != nil {
			r.report(err)
			return
		}
		if res == nil {
			return
		}
		if t, ok := res.(interpreters.Tuple); ok {
			for i, v := range t {
				if i > 0 {
					fmt.Fprint(r.out, "\t")
				}
				_ = writeJSONInline(r.out, v)
			}
			fmt.Fprintln(r.out)
			return
		}
		_ = writeJSON(r.out, res)
		return
	}
	if err := r.it.ExecContext(ctx, src); err != nil {
		r.report(err)
	}
}

func (r *repl) report(err error) {
	r.failed = true
	var ef *interpreters.ExecutionFailed
	switch {
	case errors.As(err, &ef):
		fmt.Fprintln(r.errOut, ef.Formatted)
		if ef.Errdisplay != "" {
			fmt.Fprintln(r.errOut, ef.Errdisplay)
		}
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(r.errOut, "interrupted")
	default:
		fmt.Fprintln(r.errOut, "error:", err)
	}
}

// writeJSONInline is writeJSON without the newline.
func writeJSONInline(w io.Writer, v any) error {
	var b strings.Builder
	if err := writeJSON(&b, v); err != nil {
		return err
	}
	_, err := io.WriteString(w, strings.TrimSuffix(b.String(), "\n"))
	return err
}

func parses(src string) bool {
	_, err := parse.Parse(strings.NewReader(src), "=stdin")
	return err == nil
}

// incomplete reports whether src fails to parse only because it ended too
// soon: an open block, call, table or long string. A short string left
// open at the end of a line is an error, as in the Lua REPL.
func incomplete(src string) bool {
	_, err := parse.Parse(strings.NewReader(src), "=stdin")
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "at EOF") && !strings.Contains(msg, "unterminated string")
}
