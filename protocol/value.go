package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Tier selects which Go values may cross into an interpreter.
type Tier uint8

const (
	// Strict is the shareable tier: nil, bool, integers within ±MaxSafeInt,
	// floats, strings, []byte, Tuple of strict values and queue handles.
	Strict Tier = iota
	// Fallback adds slices and string-keyed maps of fallback values.
	Fallback
)

// Tuple is a fixed sequence of values: several results of one call, or a
// strict-tier composite.
type Tuple []any

// MaxSafeInt is the largest integer a Lua 5.1 number holds exactly.
const MaxSafeInt = 1<<53 - 1

// MaxDepth bounds the nesting of a value, on the way in and out.
const MaxDepth = 100

// extQueue is the msgpack extension type of a queue handle; its payload is
// the queue id as 8 bytes big-endian.
const extQueue int8 = 1

// QueueRef is a queue handle decoded by a Codec without a Queue hook.
type QueueRef struct{ ID int64 }

// Codec converts Go values to and from the wire. The zero value knows no
// queue handles: none is accepted on encode, and QueueRef is produced on
// decode.
type Codec struct {
	// QueueID reports whether v is a queue handle and its id.
	QueueID func(v any) (int64, bool)
	// Queue returns the handle for a queue id met while decoding.
	Queue func(id int64) any
}

func notShareable(format string, args ...any) *Error {
	return &Error{Code: CodeNotShareable, Msg: fmt.Sprintf(format, args...)}
}

// MaxValueSize bounds one encoded value: a call's arguments or results, a
// queue item, a namespace. It is what a frame holds, less room for the
// message around the value.
const MaxValueSize = MaxFrameSize - 1<<20

// valueBuffer collects one encoded value and refuses to grow past
// MaxValueSize. Encoding stops at the first write beyond it, so a value
// that would expand without bound (a table holding the same table twice,
// forty levels deep) costs no more than a value too large to send.
type valueBuffer struct{ bytes.Buffer }

// errValueTooLarge ends an encoding that went past MaxValueSize.
var errValueTooLarge = errors.New("protocol: value too large")

func (b *valueBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > MaxValueSize {
		return 0, errValueTooLarge
	}
	return b.Buffer.Write(p)
}

func (b *valueBuffer) WriteByte(c byte) error {
	if b.Len()+1 > MaxValueSize {
		return errValueTooLarge
	}
	return b.Buffer.WriteByte(c)
}

// sized returns the value encoding produced, or, for one too large to
// cross, the CodeNotShareable error saying so.
func sized(b *valueBuffer, err error) ([]byte, error) {
	if errors.Is(err, errValueTooLarge) {
		return nil, notShareable("the value is more than the %d bytes that can cross between interpreters", MaxValueSize)
	}
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Check reports whether v may cross at tier t, with a CodeNotShareable
// *Error that says why not.
func (c *Codec) Check(v any, t Tier) error {
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(io.Discard)
	return c.encode(enc, v, t, 0)
}

// Marshal encodes v at tier t.
func (c *Codec) Marshal(v any, t Tier) ([]byte, error) {
	var buf valueBuffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	return sized(&buf, c.encode(enc, v, t, 0))
}

// Encode writes v at tier t to enc.
func (c *Codec) Encode(enc *msgpack.Encoder, v any, t Tier) error {
	return c.encode(enc, v, t, 0)
}

func encodeQueue(enc *msgpack.Encoder, id int64) error {
	if err := enc.EncodeExtHeader(extQueue, 8); err != nil {
		return err
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	_, err := enc.Writer().Write(b[:])
	return err
}

// encodeBytes writes b as bin, a nil slice included: it is an empty
// string, not an absent value.
func encodeBytes(enc *msgpack.Encoder, b []byte) error {
	if b == nil {
		b = []byte{}
	}
	return enc.EncodeBytes(b)
}

func encodeInt(enc *msgpack.Encoder, n int64) error {
	if n > MaxSafeInt || n < -MaxSafeInt {
		return notShareable("integer %d is beyond ±(2^53-1) and cannot be held exactly by a Lua number", n)
	}
	return enc.EncodeInt(n)
}

func encodeUint(enc *msgpack.Encoder, n uint64) error {
	if n > MaxSafeInt {
		return notShareable("integer %d is beyond ±(2^53-1) and cannot be held exactly by a Lua number", n)
	}
	return enc.EncodeInt(int64(n))
}

func (c *Codec) encode(enc *msgpack.Encoder, v any, t Tier, depth int) error {
	if depth > MaxDepth {
		return notShareable("value nested deeper than %d", MaxDepth)
	}
	switch x := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(x)
	case int:
		return encodeInt(enc, int64(x))
	case int64:
		return encodeInt(enc, x)
	case int32:
		return enc.EncodeInt(int64(x))
	case float64:
		return enc.EncodeFloat64(x)
	case string:
		return enc.EncodeString(x)
	case []byte:
		return encodeBytes(enc, x)
	case Tuple:
		return c.encodeList(enc, x, t, depth)
	case []any:
		if t == Strict {
			return notShareable("[]any is not shareable (only a Tuple is)")
		}
		return c.encodeList(enc, x, t, depth)
	case map[string]any:
		if t == Strict {
			return notShareable("map[string]any is not shareable")
		}
		if err := enc.EncodeMapLen(len(x)); err != nil {
			return err
		}
		for k, e := range x {
			if err := enc.EncodeString(k); err != nil {
				return err
			}
			if err := c.encode(enc, e, t, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if c.QueueID != nil {
		if id, ok := c.QueueID(v); ok {
			return encodeQueue(enc, id)
		}
	}
	return c.encodeReflect(enc, reflect.ValueOf(v), t, depth)
}

func (c *Codec) encodeList(enc *msgpack.Encoder, xs []any, t Tier, depth int) error {
	if err := enc.EncodeArrayLen(len(xs)); err != nil {
		return err
	}
	for _, e := range xs {
		if err := c.encode(enc, e, t, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// encodeReflect handles named types by their underlying kind, and the
// fallback tier's other slices and string-keyed maps.
func (c *Codec) encodeReflect(enc *msgpack.Encoder, rv reflect.Value, t Tier, depth int) error {
	switch rv.Kind() {
	case reflect.Bool:
		return enc.EncodeBool(rv.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return encodeInt(enc, rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return encodeUint(enc, rv.Uint())
	case reflect.Float32, reflect.Float64:
		return enc.EncodeFloat64(rv.Float())
	case reflect.String:
		return enc.EncodeString(rv.String())
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return encodeBytes(enc, rv.Bytes())
		}
		if t == Strict {
			return notShareable("%s is not shareable", rv.Type())
		}
		n := rv.Len()
		if err := enc.EncodeArrayLen(n); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := c.encode(enc, rv.Index(i).Interface(), t, depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if t == Strict {
			return notShareable("%s is not shareable", rv.Type())
		}
		if rv.Type().Key().Kind() != reflect.String {
			return notShareable("%s is not shareable: map keys must be strings", rv.Type())
		}
		if err := enc.EncodeMapLen(rv.Len()); err != nil {
			return err
		}
		it := rv.MapRange()
		for it.Next() {
			if err := enc.EncodeString(it.Key().String()); err != nil {
				return err
			}
			if err := c.encode(enc, it.Value().Interface(), t, depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Invalid:
		return enc.EncodeNil()
	}
	return notShareable("%s is not shareable", rv.Type())
}

// Unmarshal decodes one value from b into its normalised Go form: nil,
// bool, int64 (for every integral number within ±MaxSafeInt), float64,
// string (str and bin alike), []any, map[string]any and queue handles. An
// empty map comes out as an empty []any, as an empty Lua table does.
func (c *Codec) Unmarshal(b []byte) (any, error) {
	if err := wellFormed(b); err != nil {
		return nil, err
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	r := bytes.NewReader(b)
	dec.Reset(r)
	v, err := c.decode(dec, 0)
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, malformed("%d trailing bytes after value", r.Len())
	}
	return v, nil
}

func (c *Codec) decode(dec *msgpack.Decoder, depth int) (any, error) {
	if depth > MaxDepth {
		return nil, malformed("value nested deeper than %d", MaxDepth)
	}
	code, err := dec.PeekCode()
	if err != nil {
		return nil, malformed("value: %v", err)
	}
	switch {
	case code == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case code == msgpcode.False || code == msgpcode.True:
		return dec.DecodeBool()
	case msgpcode.IsFixedNum(code) || (code >= msgpcode.Uint8 && code <= msgpcode.Int64):
		if code == msgpcode.Uint64 {
			n, err := dec.DecodeUint64()
			if err != nil {
				return nil, malformed("integer: %v", err)
			}
			if n > MaxSafeInt {
				return nil, malformed("integer %d beyond ±(2^53-1)", n)
			}
			return int64(n), nil
		}
		n, err := dec.DecodeInt64()
		if err != nil {
			return nil, malformed("integer: %v", err)
		}
		if n > MaxSafeInt || n < -MaxSafeInt {
			return nil, malformed("integer %d beyond ±(2^53-1)", n)
		}
		return n, nil
	case code == msgpcode.Float || code == msgpcode.Double:
		f, err := dec.DecodeFloat64()
		if err != nil {
			return nil, malformed("float: %v", err)
		}
		return NormalizeNumber(f), nil
	case msgpcode.IsString(code) || msgpcode.IsBin(code):
		b, err := dec.DecodeBytes()
		if err != nil {
			return nil, malformed("string: %v", err)
		}
		return string(b), nil
	case msgpcode.IsFixedArray(code) || code == msgpcode.Array16 || code == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil, malformed("array: %v", err)
		}
		xs := make([]any, 0, min(n, 1024))
		for i := 0; i < n; i++ {
			v, err := c.decode(dec, depth+1)
			if err != nil {
				return nil, err
			}
			xs = append(xs, v)
		}
		return xs, nil
	case msgpcode.IsFixedMap(code) || code == msgpcode.Map16 || code == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return nil, malformed("map: %v", err)
		}
		if n == 0 {
			// An empty map is an empty table, whose one Go form is [].
			return []any{}, nil
		}
		m := make(map[string]any, min(n, 1024))
		for i := 0; i < n; i++ {
			kc, err := dec.PeekCode()
			if err != nil {
				return nil, malformed("map key: %v", err)
			}
			if !msgpcode.IsString(kc) && !msgpcode.IsBin(kc) {
				return nil, malformed("map key of code %#x is not a string", kc)
			}
			kb, err := dec.DecodeBytes()
			if err != nil {
				return nil, malformed("map key: %v", err)
			}
			v, err := c.decode(dec, depth+1)
			if err != nil {
				return nil, err
			}
			m[string(kb)] = v
		}
		return m, nil
	case msgpcode.IsExt(code):
		id, err := decodeQueueExt(dec)
		if err != nil {
			return nil, err
		}
		if c.Queue != nil {
			return c.Queue(id), nil
		}
		return QueueRef{ID: id}, nil
	}
	return nil, malformed("unsupported msgpack code %#x", code)
}

func decodeQueueExt(dec *msgpack.Decoder) (int64, error) {
	typ, n, err := dec.DecodeExtHeader()
	if err != nil {
		return 0, malformed("extension: %v", err)
	}
	if typ != extQueue || n != 8 {
		return 0, malformed("unknown extension type %d of %d bytes", typ, n)
	}
	var b [8]byte
	if err := dec.ReadFull(b[:]); err != nil {
		return 0, malformed("queue id: %v", err)
	}
	id := int64(binary.BigEndian.Uint64(b[:]))
	if id < 0 {
		return 0, malformed("negative queue id %d", id)
	}
	return id, nil
}

// NormalizeNumber returns f as int64 when it is integral and within
// ±MaxSafeInt (negative zero excepted, which stays a float), else f.
func NormalizeNumber(f float64) any {
	if f == math.Trunc(f) && f <= MaxSafeInt && f >= -MaxSafeInt && !(f == 0 && math.Signbit(f)) {
		return int64(f)
	}
	return f
}

// MarshalList encodes items as one msgpack array at tier t.
func (c *Codec) MarshalList(items []any, t Tier) ([]byte, error) {
	var buf valueBuffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	return sized(&buf, c.encodeList(enc, items, t, 0))
}

// QueueIDs returns the IDs of the queue handles inside the msgpack value b,
// so whoever forwards a value knows which queues it carries without
// decoding it. Malformed input yields what was found before the fault.
func QueueIDs(b []byte) []int64 {
	if bytes.IndexByte(b, 0xd7) < 0 && bytes.IndexByte(b, 0xc7) < 0 {
		return nil // no fixext8 or ext8 header: no queue handle
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	var ids []int64
	_ = scanQueueIDs(dec, &ids, 0)
	return ids
}

func scanQueueIDs(dec *msgpack.Decoder, ids *[]int64, depth int) error {
	if depth > MaxDepth {
		return malformed("value nested deeper than %d", MaxDepth)
	}
	code, err := dec.PeekCode()
	if err != nil {
		return err
	}
	switch {
	case msgpcode.IsFixedArray(code) || code == msgpcode.Array16 || code == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := scanQueueIDs(dec, ids, depth+1); err != nil {
				return err
			}
		}
		return nil
	case msgpcode.IsFixedMap(code) || code == msgpcode.Map16 || code == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return err
		}
		for i := 0; i < 2*n; i++ {
			if err := scanQueueIDs(dec, ids, depth+1); err != nil {
				return err
			}
		}
		return nil
	case msgpcode.IsExt(code):
		id, err := decodeQueueExt(dec)
		if err != nil {
			return err
		}
		*ids = append(*ids, id)
		return nil
	}
	return dec.Skip()
}
