package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
)

// queueKey marks a queue in JSON: {"$queue": ID}, both ways.
const queueKey = "$queue"

// unboundKey marks the Unbound sentinel in JSON output: {"$unbound": true}.
const unboundKey = "$unbound"

// parseJSONValue reads one JSON value as the Go value that crosses into an
// interpreter: integral numbers as int64, others as float64, {"$queue": ID}
// as that queue of rt. A value that is not valid JSON or that no Lua value
// holds is a usage error; a queue that does not exist is the lookup's
// error (not found).
func parseJSONValue(rt *interpreters.Runtime, s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badValue("%q is not a JSON value: %v", s, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badValue("%q holds more than one JSON value", s)
	}
	return fromJSON(rt, v)
}

func badValue(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// fromNumber is a JSON number as the Lua number that holds it exactly:
// an integer within ±(2^53-1), or a finite float.
func fromNumber(x json.Number) (any, error) {
	if !strings.ContainsAny(x.String(), ".eE") {
		n, err := x.Int64()
		if err != nil || n > protocol.MaxSafeInt || n < -protocol.MaxSafeInt {
			return nil, badValue("integer %s is beyond ±(2^53-1) and cannot be held exactly by a Lua number", x)
		}
		return n, nil
	}
	f, err := x.Float64()
	if err != nil {
		return nil, badValue("number %s is out of the range of a Lua number", x)
	}
	return f, nil
}

func fromJSON(rt *interpreters.Runtime, v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return fromNumber(x)
	case []any:
		for i, e := range x {
			var err error
			if x[i], err = fromJSON(rt, e); err != nil {
				return nil, err
			}
		}
		return x, nil
	case map[string]any:
		if q, ok := x[queueKey]; ok && len(x) == 1 {
			n, ok := q.(json.Number)
			id, err := n.Int64()
			if !ok || err != nil {
				return nil, badValue("{%q: %v}: want a queue ID", queueKey, q)
			}
			return rt.LookupQueue(id)
		}
		for k, e := range x {
			var err error
			if x[k], err = fromJSON(rt, e); err != nil {
				return nil, err
			}
		}
		return x, nil
	}
	return v, nil
}

// toJSON turns a value that came out of an interpreter into one
// encoding/json can write: queues as {"$queue": ID}, the Unbound sentinel
// as {"$unbound": true}, non-finite numbers as strings.
func toJSON(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Sprint(x)
		}
	case interpreters.Tuple:
		return toJSON([]any(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toJSON(e)
		}
		return out
	case *interpreters.Queue:
		return map[string]any{queueKey: x.ID()}
	case interpreters.UnboundItem:
		return map[string]any{unboundKey: true}
	}
	return v
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(toJSON(v))
}
