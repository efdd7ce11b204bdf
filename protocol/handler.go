package protocol

import (
	"context"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Handler serves one request. body is the raw msgpack params and stays
// valid after the handler returns. The result is encoded with msgpack (a
// msgpack.RawMessage is sent verbatim); a returned *Error crosses as is,
// any other error as CodeInterpreter. ctx is cancelled when the caller sends
// "$cancel" or the session ends.
type Handler func(ctx context.Context, body []byte) (any, error)

// Handle makes the Handler of a method whose params are a P: it decodes
// them, refusing params that are not a P with CodeProtocol, and serves them
// with f.
func Handle[P any](f func(ctx context.Context, p *P) (any, error)) Handler {
	return func(ctx context.Context, body []byte) (any, error) {
		var p P
		if err := msgpack.Unmarshal(body, &p); err != nil {
			return nil, Errorf(CodeProtocol, "params: %v", err)
		}
		return f(ctx, &p)
	}
}

// Then is a handler's result that must learn whether its answer went
// out: the server writes Result as the answer and then calls After with
// whether the write succeeded. A queue get served for a client answers
// with one, so that an item leaves its store only once it is on its way.
type Then struct {
	Result any
	After  func(sent bool)
}

// Unwrap splits a handler's result into the answer to write and what to
// call once it is written: a no-op unless res is a *Then with an After.
func Unwrap(res any) (answer any, after func(sent bool)) {
	t, ok := res.(*Then)
	switch {
	case !ok:
		return res, noAfter
	case t.After == nil:
		return t.Result, noAfter
	}
	return t.Result, t.After
}

func noAfter(bool) {}

// Ended reports why ctx has ended, nil while it runs. A deadline that has
// passed counts though its timer has not fired yet: on a loaded machine
// that can take milliseconds, and a wait that ended at its deadline must
// say so rather than look like an answer.
func Ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// WithTimeout bounds ctx by a request's TimeoutNs, the time its caller has
// left; 0 means no bound of its own, and ctx is returned as it is.
func WithTimeout(ctx context.Context, ns int64) (context.Context, context.CancelFunc) {
	if ns > 0 {
		return context.WithTimeout(ctx, time.Duration(ns))
	}
	return ctx, func() {}
}
