package protocol_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/subinterp/subinterp/protocol"
)

func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		e    *protocol.Error
		want string
	}{
		{&protocol.Error{Code: protocol.CodeQueueEmpty}, "queue_empty"},
		{&protocol.Error{Code: protocol.CodeQueueEmpty, Msg: "empty"}, "empty"},
		{&protocol.Error{Code: protocol.CodeExecutionFailed, Msg: "spam", Formatted: "ValueError: spam"}, "ValueError: spam"},
		{protocol.Errorf(protocol.CodeInvalidArgument, "bad %q at %d", "x", 3), `bad "x" at 3`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", *tc.e, got, tc.want)
		}
	}
	if e := protocol.Errorf(protocol.CodeNotFound, "none"); e.Code != protocol.CodeNotFound {
		t.Errorf("Errorf code = %q", e.Code)
	}
}

func TestErrorHas(t *testing.T) {
	e := &protocol.Error{Code: protocol.CodeExecutionFailed, Cause: protocol.CodeMemoryLimit}
	if !e.Has(protocol.CodeExecutionFailed) || !e.Has(protocol.CodeMemoryLimit) {
		t.Error("Has misses the Code or the Cause")
	}
	if e.Has(protocol.CodeCPULimit) {
		t.Error("Has matches an unrelated code")
	}
	var nilErr *protocol.Error
	if nilErr.Has(protocol.CodeClosed) {
		t.Error("a nil *Error has a code")
	}
}

func TestAsError(t *testing.T) {
	if protocol.AsError(nil) != nil {
		t.Error("AsError(nil) != nil")
	}
	e := fullError()
	if protocol.AsError(e) != e {
		t.Error("an *Error is not returned as is")
	}
	if protocol.AsError(fmt.Errorf("ctx: %w", e)) != e {
		t.Error("a wrapped *Error is not unwrapped")
	}
	for _, tc := range []struct {
		err  error
		code protocol.Code
	}{
		{context.Canceled, protocol.CodeCanceled},
		{fmt.Errorf("op: %w", context.Canceled), protocol.CodeCanceled},
		{context.DeadlineExceeded, protocol.CodeDeadlineExceeded},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), protocol.CodeDeadlineExceeded},
		{errors.New("boom"), protocol.CodeInterpreter},
	} {
		got := protocol.AsError(tc.err)
		if got == nil || got.Code != tc.code || got.Msg != tc.err.Error() {
			t.Errorf("AsError(%v) = %+v, want code %q and the error's text", tc.err, got, tc.code)
		}
	}
}
