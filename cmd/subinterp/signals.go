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
)

// stopError says why a command was cut short: a signal or --timeout. It
// matches the error of the context it ended (context.Canceled or
// context.DeadlineExceeded), and Main reports it, with its exit code, in
// place of whatever the call that was cut short said about it ("queue is
// empty", "cannot reach the daemon", ...).
type stopError struct {
	msg    string
	code   int
	ctxErr error
}

func (e *stopError) Error() string        { return e.msg }
func (e *stopError) Is(target error) bool { return target == e.ctxErr }

// interrupted is the stop of a command by sig; its exit code is the
// shell's for a process killed by that signal (128 + its number).
func interrupted(sig os.Signal) *stopError {
	name, code := fmt.Sprint(sig), exitInterrupted
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s)
		switch s {
		case syscall.SIGINT:
			name = "SIGINT"
		case syscall.SIGTERM:
			name = "SIGTERM"
		case syscall.SIGHUP:
			name = "SIGHUP"
		}
	}
	return &stopError{msg: "interrupted by " + name, code: code, ctxErr: context.Canceled}
}

// timedOut is the stop of a command by --timeout.
func timedOut(d time.Duration) *stopError {
	return &stopError{msg: fmt.Sprintf("timed out after %v", d), code: exitFailure, ctxErr: context.DeadlineExceeded}
}

// commandContext is the context of one command: it ends on the first of
// sigs or after --timeout, with a *stopError as its cause, and Main then
// reports that cause. After the first signal the next one has its default
// action again, so a second Ctrl-C ends a command that is slow to stop.
func (g *clientFlags) commandContext(cmd *cobra.Command, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	parent := cmd.Context()
	if parent == nil {
		parent = context.Background()
	}
	base, cancel := context.WithCancelCause(parent)
	caught := make(chan os.Signal, 1)
	if len(sigs) > 0 {
		signal.Notify(caught, sigs...)
	}
	go func() {
		select {
		case sig := <-caught:
			signal.Stop(caught)
			cancel(interrupted(sig))
		case <-base.Done():
		}
	}()
	ctx := context.Context(base)
	stop := func() {
		signal.Stop(caught)
		cancel(nil)
	}
	if g.timeout > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, g.timeout, timedOut(g.timeout))
		stop = func() { cancelTimeout(); signal.Stop(caught); cancel(nil) }
	}
	g.ctx = ctx
	return ctx, stop
}

// stopped returns what cut the command short, or nil when nothing did:
// its context is still live, or the command ended it itself.
func (g *clientFlags) stopped() *stopError {
	if g.ctx == nil || g.ctx.Err() == nil {
		return nil
	}
	var se *stopError
	if errors.As(context.Cause(g.ctx), &se) {
		return se
	}
	return nil
}

// readAll reads r to its end, or until ctx ends: a stdin that never
// closes must not outlast a signal or --timeout.
func readAll(ctx context.Context, r io.Reader) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- result{b, err}
	}()
	select {
	case res := <-ch:
		return res.b, res.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}
