package protocol_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"

	"github.com/subinterp/subinterp/protocol"
)

// wantCode fails t unless err is a *protocol.Error (possibly wrapped) with
// the given code.
func wantCode(t testing.TB, err error, code protocol.Code) *protocol.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want a *protocol.Error with code %q", code)
	}
	var e *protocol.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T (%v), want a *protocol.Error with code %q", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %q (%v), want %q", e.Code, e, code)
	}
	return e
}

// valuesEqual is reflect.DeepEqual for normalised values, except that NaN
// equals NaN: a NaN that crosses the wire is the same value coming back.
func valuesEqual(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.IsNaN(x) && math.IsNaN(y)
		}
		return x == y && math.Signbit(x) == math.Signbit(y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !valuesEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !valuesEqual(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// show renders a normalised value with its dynamic types, so that a
// mismatch between int64(1) and float64(1) is visible in a failure.
func show(v any) string {
	switch x := v.(type) {
	case []any:
		if x == nil {
			return "[]any(nil)"
		}
		s := "[]any{"
		for i, e := range x {
			if i > 0 {
				s += ", "
			}
			s += show(e)
		}
		return s + "}"
	case map[string]any:
		if x == nil {
			return "map[string]any(nil)"
		}
		s := "map{"
		first := true
		for k, e := range x {
			if !first {
				s += ", "
			}
			first = false
			s += fmt.Sprintf("%q: %s", k, show(e))
		}
		return s + "}"
	case float64:
		return fmt.Sprintf("float64(%v, neg=%v)", x, math.Signbit(x))
	}
	return fmt.Sprintf("%T(%#v)", v, v)
}

// nestList returns levels nested []any, the innermost holding leaf (or
// nothing when leaf is nil).
func nestList(levels int, leaf any) any {
	var v any = []any{}
	if leaf != nil {
		v = []any{leaf}
	}
	for i := 1; i < levels; i++ {
		v = []any{v}
	}
	return v
}

// nestWire returns levels nested one-element msgpack arrays around leaf.
func nestWire(levels int, leaf []byte) []byte {
	b := make([]byte, 0, levels+len(leaf))
	for i := 0; i < levels; i++ {
		b = append(b, 0x91)
	}
	return append(b, leaf...)
}
