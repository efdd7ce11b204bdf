package protocol

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TestHandleDecodes: a handler gets its params decoded, and params of
// another shape are refused as a protocol error before it runs.
func TestHandleDecodes(t *testing.T) {
	ran := false
	h := Handle(func(_ context.Context, p *IDParams) (any, error) {
		ran = true
		return p.ID * 2, nil
	})
	body, err := msgpack.Marshal(&IDParams{ID: 21})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := h(context.Background(), body); err != nil || res != int64(42) {
		t.Fatalf("h(21) = %v, %v; want 42", res, err)
	}
	ran = false
	_, err = h(context.Background(), []byte{0xa1, 'x'}) // a string, not IDParams
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeProtocol {
		t.Fatalf("bad params gave %v, want a %s error", err, CodeProtocol)
	}
	if ran {
		t.Error("the handler ran on params it could not decode")
	}
}

// TestWithTimeout: a request's TimeoutNs bounds its context; 0 leaves the
// caller's context as it is.
func TestWithTimeout(t *testing.T) {
	parent := context.Background()
	ctx, cancel := WithTimeout(parent, 0)
	cancel()
	if ctx != parent || ctx.Err() != nil {
		t.Errorf("WithTimeout(0) gave %v (err %v), want the parent unchanged", ctx, ctx.Err())
	}
	ctx, cancel = WithTimeout(parent, int64(time.Hour))
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > time.Hour {
		t.Errorf("WithTimeout(1h) has deadline %v, %v", dl, ok)
	}
}
