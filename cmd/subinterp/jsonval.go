package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/subinterp/subinterp/interpreters"
)

// queueKey marks a queue in JSON: {"$queue": ID}, both ways.
const queueKey = "$queue"

// unboundKey marks the Unbound sentinel in JSON output: {"$unbound": true}.
const unboundKey = "$unbound"

// parseJSONValue reads one JSON value as the Go value that crosses into an
// interpreter: integral numbers as int64, others as float64, {"$queue": ID}
// as that queue of rt.
func parseJSONValue(rt *interpreters.Runtime, s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%q is not a JSON value: %v", s, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%q holds more than one JSON value", s)
	}
	return fromJSON(rt, v)
}

func fromJSON(rt *interpreters.Runtime, v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		return x.Float64()
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
				return nil, fmt.Errorf("{%q: %v}: want a queue ID", queueKey, q)
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
