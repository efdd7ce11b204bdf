package main

import (
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
	cmd := &cobra.Command{
		Use:   "repl ID",
		Short: "Read-eval-print loop on one of the daemon's interpreters",
		Long: `Read Lua from stdin a chunk at a time and run it in the interpreter. A line
that is an expression ("x", "math.pi", "f(1)", "1, 2") prints its values as
JSON, nil as null; a chunk that starts with return prints what it returns;
anything else runs as a statement. A line that leaves a chunk unfinished
(an open block, call or table) asks for more. A blank line ends an
unfinished chunk: it runs as it stands and reports what it lacks (only
inside a long string or comment is a blank line part of the chunk).

Errors are printed and the loop goes on; the interpreter keeps its globals
(locals last one chunk, as in the Lua REPL). Ctrl-C interrupts a running
chunk. At the prompt, Ctrl-C drops an unfinished chunk; on an empty prompt
it ends the loop (exit code 130), as end of input (Ctrl-D) does.

On a terminal, lines can be edited and earlier ones recalled (arrow keys,
Ctrl-R to search); the history is kept in
$XDG_STATE_HOME/subinterp/repl_history (~/.local/state/subinterp without
XDG_STATE_HOME).

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
	g.addControlFlags(cmd.Flags())
	return cmd
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

// prompt is what the terminal shows before a line: the interpreter's ID
// for a new chunk, ">>" for more of an unfinished one; none to a pipe.
func (r *repl) prompt(more bool) string {
	switch {
	case !r.interactive:
		return ""
	case more:
		return ">> "
	}
	return fmt.Sprintf("%d> ", r.it.ID())
}

// run reads lines on a goroutine of their own, one when the loop asks, so
// the loop can watch for Ctrl-C while a chunk runs and while it waits for
// input.
func (r *repl) run(in io.Reader) error {
	lr := newLineReader(in, r.interactive, r.out, r.errOut)
	defer lr.close()
	type result struct {
		line string
		err  error
	}
	prompts := make(chan string)
	results := make(chan result, 1)
	defer close(prompts)
	go func() {
		for p := range prompts {
			line, err := lr.readLine(p)
			results <- result{line, err}
		}
	}()
	// SIGINT is handled per chunk below; the command's own context would
	// otherwise end the whole loop on the first Ctrl-C.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)

	var chunk strings.Builder
	more := false
	for {
		prompts <- r.prompt(more)
		var res result
		select {
		case res = <-results:
		case <-sigs:
			if r.interactive {
				fmt.Fprintln(r.out)
			}
			return interrupted(os.Interrupt)
		case <-r.ctx.Done():
			return r.end(r.ctx)
		}
		if errors.Is(res.err, errPromptInterrupted) {
			// Ctrl-C at the prompt drops an unfinished chunk; at an empty
			// prompt it ends the loop.
			if strings.TrimSpace(chunk.String()) != "" {
				chunk.Reset()
				more = false
				continue
			}
			return interrupted(os.Interrupt)
		}
		if res.err != nil {
			if !errors.Is(res.err, io.EOF) {
				return res.err
			}
			if strings.TrimSpace(chunk.String()) != "" {
				r.eval(chunk.String(), sigs) // an unfinished chunk gets its syntax error
			}
			if r.interactive {
				fmt.Fprintln(r.out)
			}
			return r.end(r.ctx)
		}
		line := res.line
		pending := strings.TrimSpace(chunk.String()) != ""
		chunk.WriteString(line)
		src := chunk.String()
		if strings.TrimSpace(src) == "" {
			chunk.Reset()
			more = false
			continue
		}
		var inLong bool
		more, inLong = incomplete(src)
		if _, isValue := valueBlock(src); isValue {
			more = false
		}
		// A blank line ends an unfinished chunk, so that one that cannot
		// be finished says so rather than keep asking for more.
		if more && !(pending && strings.TrimSpace(line) == "" && !inLong) {
			continue
		}
		more = false
		chunk.Reset()
		r.eval(src, sigs)
		if r.ctx.Err() != nil {
			return r.end(r.ctx)
		}
	}
}

// end is the loop's result once it stops: why the command's context ended
// (SIGTERM or --timeout), else failure if a piped chunk failed.
func (r *repl) end(ctx context.Context) error {
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case r.failed && !r.interactive:
		return &exitError{code: exitFailure}
	}
	return nil
}

// eval runs one chunk: an expression, or a block that returns, has its
// values printed; anything else runs as a statement. Ctrl-C cancels it.
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
	if block, ok := valueBlock(src); ok {
		res, err := r.it.CallContext(ctx, valuesFn(block))
		if err != nil {
			r.report(err)
			return
		}
		r.printValues(res)
		return
	}
	if err := r.it.ExecContext(ctx, src); err != nil {
		r.report(err)
	}
}

// valueBlock returns the block whose values the chunk src prints: "return
// src" when src is an expression (as the Lua 5.3 REPL and CPython try
// first), src itself when it is a block that starts with return.
func valueBlock(src string) (string, bool) {
	s := strings.TrimSpace(src)
	s = strings.TrimPrefix(s, "=") // Lua 5.1's "=expr"
	if parses("return " + s) {
		return "return " + s, true
	}
	if isReturn(s) && parses(s) {
		return s, true
	}
	return "", false
}

// isReturn reports whether s starts with the keyword return.
func isReturn(s string) bool {
	rest, ok := strings.CutPrefix(s, "return")
	if !ok || rest == "" {
		return ok
	}
	c := rest[0]
	return !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
}

// valuesFn makes a block into a function whose first result counts the
// block's results: a nil value then prints as null, while a call that
// returns nothing (print) prints nothing. The block starts on the first
// line, so error positions name the user's lines.
func valuesFn(block string) string {
	return "function() return (function(...) return select('#', ...), ... end)((function() " + block + "\nend)()) end"
}

// printValues prints the results of a valuesFn call on one line, as JSON
// separated by tabs.
func (r *repl) printValues(res any) {
	t, ok := res.(interpreters.Tuple)
	if !ok || len(t) < 2 {
		return // only the count, 0: no values
	}
	for i, v := range t[1:] {
		if i > 0 {
			fmt.Fprint(r.out, "\t")
		}
		_ = writeJSONInline(r.out, v)
	}
	fmt.Fprintln(r.out)
}

func (r *repl) report(err error) {
	r.failed = true
	if r.ctx.Err() != nil {
		return // the whole loop was stopped: end says why
	}
	var ef *interpreters.ExecutionFailed
	switch {
	case errors.As(err, &ef):
		printFailure(r.errOut, ef)
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
// soon: an open block, call, table, long string or long comment; inLong
// says it ends inside a long string or comment. A short string left open
// at the end of a line is an error, as in the Lua REPL.
func incomplete(src string) (more, inLong bool) {
	_, err := parse.Parse(strings.NewReader(src), "=stdin")
	if err == nil {
		return false, false
	}
	msg := err.Error()
	if !strings.Contains(msg, "at EOF") || strings.Contains(msg, "unterminated string") {
		return false, false
	}
	return true, strings.Contains(msg, "multiline")
}
