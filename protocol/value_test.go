package protocol_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/subinterp/subinterp/protocol"
)

type (
	MyBytes  []byte
	MyInt    int8
	MyUint   uint16
	MyString string
	MyFloat  float32
	MyBool   bool
	MyMap    map[string]int
	MyKey    string
	MyList   []string
)

// fakeQueue stands for the interpreters package's *Queue.
type fakeQueue struct{ id int64 }

func queueCodec() *protocol.Codec {
	return &protocol.Codec{
		QueueID: func(v any) (int64, bool) {
			switch q := v.(type) {
			case *fakeQueue:
				return q.id, true
			case protocol.QueueRef:
				return q.ID, true
			}
			return 0, false
		},
	}
}

const maxSafe = protocol.MaxSafeInt

type tierCase struct {
	name     string
	v        any
	strict   bool // accepted at the strict tier
	fallback bool // accepted at the fallback tier
	want     any  // the normalised form that comes back
}

func tierCases() []tierCase {
	x := 1
	return []tierCase{
		{"nil", nil, true, true, nil},
		{"true", true, true, true, true},
		{"false", false, true, true, false},
		{"int", int(-7), true, true, int64(-7)},
		{"int8", int8(math.MinInt8), true, true, int64(math.MinInt8)},
		{"int16", int16(math.MaxInt16), true, true, int64(math.MaxInt16)},
		{"int32", int32(math.MinInt32), true, true, int64(math.MinInt32)},
		{"int64", int64(math.MaxInt32) + 1, true, true, int64(math.MaxInt32) + 1},
		{"uint", uint(42), true, true, int64(42)},
		{"uint8", uint8(math.MaxUint8), true, true, int64(math.MaxUint8)},
		{"uint16", uint16(math.MaxUint16), true, true, int64(math.MaxUint16)},
		{"uint32", uint32(math.MaxUint32), true, true, int64(math.MaxUint32)},
		{"uint64 small", uint64(3), true, true, int64(3)},
		{"uintptr", uintptr(9), true, true, int64(9)},
		{"int64 max safe", int64(maxSafe), true, true, int64(maxSafe)},
		{"int64 min safe", int64(-maxSafe), true, true, int64(-maxSafe)},
		{"int max safe", int(maxSafe), true, true, int64(maxSafe)},
		{"int min safe", int(-maxSafe), true, true, int64(-maxSafe)},
		{"uint64 max safe", uint64(maxSafe), true, true, int64(maxSafe)},
		{"int64 2^53", int64(maxSafe + 1), false, false, nil},
		{"int64 -2^53", int64(-maxSafe - 1), false, false, nil},
		{"int 2^53", int(maxSafe + 1), false, false, nil},
		{"int -2^53", int(-maxSafe - 1), false, false, nil},
		{"int64 min", int64(math.MinInt64), false, false, nil},
		{"int64 max", int64(math.MaxInt64), false, false, nil},
		{"uint64 2^53", uint64(maxSafe + 1), false, false, nil},
		{"uint64 max", uint64(math.MaxUint64), false, false, nil},
		{"uint max", uint(math.MaxUint), false, false, nil},
		{"uintptr 2^53", uintptr(maxSafe + 1), false, false, nil},
		{"float32 fraction", float32(1.5), true, true, float64(1.5)},
		{"float32 integral", float32(2), true, true, int64(2)},
		{"float32 inexact", float32(0.1), true, true, float64(float32(0.1))},
		{"float64 fraction", 0.25, true, true, 0.25},
		{"float64 integral", float64(-3), true, true, int64(-3)},
		{"float64 2^53", float64(1 << 53), true, true, float64(1 << 53)},
		{"float64 huge", 1e300, true, true, 1e300},
		{"float64 +inf", math.Inf(1), true, true, math.Inf(1)},
		{"float64 -inf", math.Inf(-1), true, true, math.Inf(-1)},
		{"float64 NaN", math.NaN(), true, true, math.NaN()},
		{"float64 -0", math.Copysign(0, -1), true, true, math.Copysign(0, -1)},
		{"string", "héllo\x00", true, true, "héllo\x00"},
		{"empty string", "", true, true, ""},
		{"bytes", []byte("abc"), true, true, "abc"},
		{"empty bytes", []byte{}, true, true, ""},
		{"named bytes", MyBytes("xyz"), true, true, "xyz"},
		{"named int8", MyInt(-5), true, true, int64(-5)},
		{"named uint16", MyUint(7), true, true, int64(7)},
		{"named string", MyString("s"), true, true, "s"},
		{"named float32", MyFloat(0.5), true, true, 0.5},
		{"named bool", MyBool(true), true, true, true},
		{"tuple of strict", protocol.Tuple{1, "a", []byte("b"), nil, 2.5, protocol.Tuple{true}},
			true, true, []any{int64(1), "a", "b", nil, 2.5, []any{true}}},
		{"empty tuple", protocol.Tuple{}, true, true, []any{}},
		{"nil tuple", protocol.Tuple(nil), true, true, []any{}},
		{"tuple holding a map", protocol.Tuple{map[string]any{"k": 1}},
			false, true, []any{map[string]any{"k": int64(1)}}},
		{"tuple holding []any", protocol.Tuple{[]any{1}}, false, true, []any{[]any{int64(1)}}},
		{"tuple holding a big int", protocol.Tuple{int64(maxSafe + 1)}, false, false, nil},
		{"[]any", []any{1, "x"}, false, true, []any{int64(1), "x"}},
		{"nil []any", []any(nil), false, true, []any{}},
		{"map[string]any", map[string]any{"a": 1, "b": []any{}},
			false, true, map[string]any{"a": int64(1), "b": []any{}}},
		{"nil map[string]any", map[string]any(nil), false, true, []any{}},
		{"empty map[string]any", map[string]any{}, false, true, []any{}},
		{"map holding an empty map", map[string]any{"e": map[string]any{}}, false, true, map[string]any{"e": []any{}}},
		{"[]int", []int{1, 2}, false, true, []any{int64(1), int64(2)}},
		{"[]string", []string{"a"}, false, true, []any{"a"}},
		{"named slice", MyList{"q"}, false, true, []any{"q"}},
		{"[][]byte", [][]byte{[]byte("a")}, false, true, []any{"a"}},
		{"map[string]int", map[string]int{"a": 1}, false, true, map[string]any{"a": int64(1)}},
		{"named map", MyMap{"n": 2}, false, true, map[string]any{"n": int64(2)}},
		{"named-key map", map[MyKey]any{"k": true}, false, true, map[string]any{"k": true}},
		{"nested fallback", map[string][]map[string]float64{"l": {{"f": 1.5}}},
			false, true, map[string]any{"l": []any{map[string]any{"f": 1.5}}}},
		{"[]int holding a big int", []int{1, maxSafe + 1}, false, false, nil},
		{"[]any holding a func", []any{func() {}}, false, false, nil},
		{"map holding a chan", map[string]any{"c": make(chan int)}, false, false, nil},
		{"map[int]any", map[int]any{1: 1}, false, false, nil},
		{"map[any]any", map[any]any{"a": 1}, false, false, nil},
		{"struct", struct{ A int }{1}, false, false, nil},
		{"empty struct", struct{}{}, false, false, nil},
		{"func", func() {}, false, false, nil},
		{"chan", make(chan int), false, false, nil},
		{"pointer", &x, false, false, nil},
		{"nil pointer", (*int)(nil), false, false, nil},
		{"pointer to tuple", &protocol.Tuple{}, false, false, nil},
		{"array", [2]int{1, 2}, false, false, nil},
		{"byte array", [2]byte{1, 2}, false, false, nil},
		{"complex", complex(1, 2), false, false, nil},
		{"unsafe pointer", unsafe.Pointer(&x), false, false, nil},
		{"QueueRef without hook", protocol.QueueRef{ID: 1}, false, false, nil},
	}
}

func TestCodecTiers(t *testing.T) {
	var c protocol.Codec
	for _, tc := range tierCases() {
		t.Run(tc.name, func(t *testing.T) {
			for _, tier := range []struct {
				name string
				tier protocol.Tier
				ok   bool
			}{{"strict", protocol.Strict, tc.strict}, {"fallback", protocol.Fallback, tc.fallback}} {
				checkErr := c.Check(tc.v, tier.tier)
				b, err := c.Marshal(tc.v, tier.tier)
				if !tier.ok {
					wantCode(t, checkErr, protocol.CodeNotShareable)
					wantCode(t, err, protocol.CodeNotShareable)
					if b != nil {
						t.Errorf("%s: Marshal returned bytes %x with an error", tier.name, b)
					}
					continue
				}
				if checkErr != nil {
					t.Fatalf("%s: Check: %v", tier.name, checkErr)
				}
				if err != nil {
					t.Fatalf("%s: Marshal: %v", tier.name, err)
				}
				got, err := c.Unmarshal(b)
				if err != nil {
					t.Fatalf("%s: Unmarshal(%x): %v", tier.name, b, err)
				}
				if !valuesEqual(got, tc.want) {
					t.Errorf("%s: round trip = %s, want %s", tier.name, show(got), show(tc.want))
				}
			}
		})
	}
}

// A []byte is shareable, so its nil value must come back as the empty
// string like any other []byte, not as nil: a Go caller passing an unset
// byte slice would otherwise see the target receive nil instead of "".
func TestCodecNilBytesComesBackAsString(t *testing.T) {
	var c protocol.Codec
	for _, v := range []any{[]byte(nil), MyBytes(nil)} {
		b, err := c.Marshal(v, protocol.Strict)
		if err != nil {
			t.Fatalf("Marshal(%T nil): %v", v, err)
		}
		got, err := c.Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if got != "" {
			t.Errorf("%T(nil) came back as %s, want the empty string", v, show(got))
		}
	}
}

func TestCodecDepth(t *testing.T) {
	var c protocol.Codec
	for _, tier := range []protocol.Tier{protocol.Strict, protocol.Fallback} {
		tuple := func(levels int) any {
			var v any = protocol.Tuple{int64(1)}
			for i := 1; i < levels; i++ {
				v = protocol.Tuple{v}
			}
			return v
		}
		if err := c.Check(tuple(protocol.MaxDepth), tier); err != nil {
			t.Errorf("tier %d: %d nested tuples rejected: %v", tier, protocol.MaxDepth, err)
		}
		wantCode(t, c.Check(tuple(protocol.MaxDepth+1), tier), protocol.CodeNotShareable)
	}

	if err := c.Check(nestList(protocol.MaxDepth, 1), protocol.Fallback); err != nil {
		t.Errorf("%d nested lists rejected: %v", protocol.MaxDepth, err)
	}
	wantCode(t, c.Check(nestList(protocol.MaxDepth+1, 1), protocol.Fallback), protocol.CodeNotShareable)

	var m any = map[string]any{"leaf": 1}
	for i := 0; i < protocol.MaxDepth; i++ {
		m = map[string]any{"k": m}
	}
	wantCode(t, c.Check(m, protocol.Fallback), protocol.CodeNotShareable)

	// A value that contains itself must be refused, not recursed into
	// until the stack runs out.
	cyc := []any{nil}
	cyc[0] = cyc
	wantCode(t, c.Check(cyc, protocol.Fallback), protocol.CodeNotShareable)
	cm := map[string]any{}
	cm["self"] = cm
	_, err := c.Marshal(cm, protocol.Fallback)
	wantCode(t, err, protocol.CodeNotShareable)
}

func TestCodecQueueHandles(t *testing.T) {
	q := &fakeQueue{id: 42}
	var zero protocol.Codec
	wantCode(t, zero.Check(q, protocol.Strict), protocol.CodeNotShareable)

	c := queueCodec()
	if err := c.Check(q, protocol.Strict); err != nil {
		t.Fatalf("a queue handle is strict-tier shareable: %v", err)
	}
	b, err := c.Marshal(protocol.Tuple{q}, protocol.Strict)
	if err != nil {
		t.Fatal(err)
	}
	// fixarray(1), fixext8 of type 1, the id as 8 bytes big-endian.
	want := []byte{0x91, 0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 42}
	if !bytes.Equal(b, want) {
		t.Fatalf("wire form %x, want %x", b, want)
	}

	got, err := zero.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !valuesEqual(got, []any{protocol.QueueRef{ID: 42}}) {
		t.Errorf("without a Queue hook got %s, want a QueueRef", show(got))
	}

	byID := map[int64]*fakeQueue{42: q}
	hooked := protocol.Codec{Queue: func(id int64) any { return byID[id] }}
	got, err = hooked.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if xs, ok := got.([]any); !ok || len(xs) != 1 || xs[0] != q {
		t.Errorf("with a Queue hook got %s, want the same *fakeQueue", show(got))
	}
}

// TestCodecValueTooLarge: a value that encodes past MaxValueSize is not
// shareable, and encoding stops there: a list holding the same list twice,
// forty levels deep, would otherwise expand to 2^40 leaves.
func TestCodecValueTooLarge(t *testing.T) {
	var c protocol.Codec
	x := any(strings.Repeat("leaf", 1<<18)) // 1 MiB leaves reach the limit in few writes
	for range 40 {
		x = []any{x, x}
	}
	_, err := c.Marshal(x, protocol.Fallback)
	wantCode(t, err, protocol.CodeNotShareable)
	_, err = c.MarshalList([]any{x}, protocol.Fallback)
	wantCode(t, err, protocol.CodeNotShareable)
	b, err := c.Marshal(strings.Repeat("x", protocol.MaxValueSize-16), protocol.Fallback)
	if err != nil || len(b) > protocol.MaxValueSize {
		t.Errorf("a string just under the limit: %d bytes, %v", len(b), err)
	}
}

// wire helpers for hand-built msgpack.
func be16(n uint16) []byte { return binary.BigEndian.AppendUint16(nil, n) }
func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
func be64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func f32(f float32) []byte { return cat([]byte{0xca}, be32(math.Float32bits(f))) }
func f64(f float64) []byte { return cat([]byte{0xcb}, be64(math.Float64bits(f))) }
func str8(s string) []byte { return cat([]byte{0xd9, byte(len(s))}, []byte(s)) }
func bin8(s string) []byte { return cat([]byte{0xc4, byte(len(s))}, []byte(s)) }
func fixstr(s string) []byte {
	return cat([]byte{0xa0 | byte(len(s))}, []byte(s))
}
func i64bits(n int64) uint64    { return uint64(n) }
func queueExt(id uint64) []byte { return cat([]byte{0xd7, 0x01}, be64(id)) }

type decodeCase struct {
	name string
	wire []byte
	want any
}

func decodeCases() []decodeCase {
	return []decodeCase{
		{"nil", []byte{0xc0}, nil},
		{"false", []byte{0xc2}, false},
		{"true", []byte{0xc3}, true},
		{"positive fixint", []byte{0x7f}, int64(127)},
		{"negative fixint", []byte{0xe0}, int64(-32)},
		{"uint8", []byte{0xcc, 0xff}, int64(255)},
		{"uint16", cat([]byte{0xcd}, be16(65535)), int64(65535)},
		{"uint32", cat([]byte{0xce}, be32(math.MaxUint32)), int64(math.MaxUint32)},
		{"uint64 small", cat([]byte{0xcf}, be64(5)), int64(5)},
		{"uint64 max safe", cat([]byte{0xcf}, be64(maxSafe)), int64(maxSafe)},
		{"int8", []byte{0xd0, 0x80}, int64(-128)},
		{"int16", cat([]byte{0xd1}, be16(0x8000)), int64(math.MinInt16)},
		{"int32", cat([]byte{0xd2}, be32(0x80000000)), int64(math.MinInt32)},
		{"int64 small", cat([]byte{0xd3}, be64(1)), int64(1)},
		{"int64 min safe", cat([]byte{0xd3}, be64(i64bits(-maxSafe))), int64(-maxSafe)},
		{"float32 integral", f32(3), int64(3)},
		{"float32 half", f32(0.5), 0.5},
		{"float64 integral", f64(-12), int64(-12)},
		{"float64 max safe", f64(maxSafe), int64(maxSafe)},
		{"float64 2^53", f64(1 << 53), float64(1 << 53)},
		{"float64 fraction", f64(0.1), 0.1},
		{"float64 -0", f64(math.Copysign(0, -1)), math.Copysign(0, -1)},
		{"float32 -0", f32(float32(math.Copysign(0, -1))), math.Copysign(0, -1)},
		{"float64 +0", f64(0), int64(0)},
		{"float64 inf", f64(math.Inf(1)), math.Inf(1)},
		{"float64 NaN", f64(math.NaN()), math.NaN()},
		{"fixstr", fixstr("hi"), "hi"},
		{"str8", str8("héllo"), "héllo"},
		{"str16", cat([]byte{0xda}, be16(3), []byte("abc")), "abc"},
		{"str32", cat([]byte{0xdb}, be32(1), []byte("z")), "z"},
		{"bin8", bin8("\x00\xff"), "\x00\xff"},
		{"bin16", cat([]byte{0xc5}, be16(2), []byte("ab")), "ab"},
		{"bin32", cat([]byte{0xc6}, be32(0)), ""},
		{"empty fixarray", []byte{0x90}, []any{}},
		{"empty array16", cat([]byte{0xdc}, be16(0)), []any{}},
		{"array32", cat([]byte{0xdd}, be32(2), []byte{0x01, 0xc0}), []any{int64(1), nil}},
		{"nested arrays", []byte{0x92, 0x91, 0x90, 0xc3}, []any{[]any{[]any{}}, true}},
		{"empty fixmap, an empty table", []byte{0x80}, []any{}},
		{"map16", cat([]byte{0xde}, be16(1), fixstr("k"), []byte{0x02}), map[string]any{"k": int64(2)}},
		{"map32 with a bin key", cat([]byte{0xdf}, be32(1), bin8("b"), []byte{0x90}), map[string]any{"b": []any{}}},
		{"map holding an array", cat([]byte{0x81}, fixstr("a"), []byte{0x91, 0xcc, 0x80}),
			map[string]any{"a": []any{int64(128)}}},
		{"queue", queueExt(7), protocol.QueueRef{ID: 7}},
		{"queue in a list", cat([]byte{0x91}, queueExt(1<<40)), []any{protocol.QueueRef{ID: 1 << 40}}},
		{"nesting at the limit", nestWire(protocol.MaxDepth, []byte{0x01}), nestList(protocol.MaxDepth, int64(1))},
	}
}

func TestCodecDecodeNormalises(t *testing.T) {
	var c protocol.Codec
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Unmarshal(tc.wire)
			if err != nil {
				t.Fatalf("Unmarshal(%x): %v", tc.wire, err)
			}
			if !valuesEqual(got, tc.want) {
				t.Fatalf("Unmarshal(%x) = %s, want %s", tc.wire, show(got), show(tc.want))
			}
		})
	}
}

type malformedCase struct {
	name string
	wire []byte
}

func malformedValues() []malformedCase {
	return []malformedCase{
		{"empty input", nil},
		{"never-used code", []byte{0xc1}},
		{"trailing bytes", []byte{0x01, 0x02}},
		{"truncated uint16", []byte{0xcd, 0x01}},
		{"truncated float64", []byte{0xcb, 0, 0}},
		{"truncated string", []byte{0xa5, 'a'}},
		{"truncated str32", cat([]byte{0xdb}, be32(1<<16), []byte("a"))},
		{"truncated bin32", cat([]byte{0xc6}, be32(1<<16), []byte("a"))},
		{"truncated array", []byte{0x92, 0x01}},
		{"huge array header", cat([]byte{0xdd}, be32(math.MaxUint32))},
		{"huge map header", cat([]byte{0xdf}, be32(math.MaxUint32))},
		{"truncated map", []byte{0x81, 0xa1, 'k'}},
		{"uint64 2^53", cat([]byte{0xcf}, be64(maxSafe+1))},
		{"uint64 max", cat([]byte{0xcf}, be64(math.MaxUint64))},
		{"int64 -2^53", cat([]byte{0xd3}, be64(i64bits(-maxSafe-1)))},
		{"int64 max", cat([]byte{0xd3}, be64(math.MaxInt64))},
		{"integer map key", []byte{0x81, 0x01, 0x02}},
		{"nil map key", []byte{0x81, 0xc0, 0x02}},
		{"array map key", []byte{0x81, 0x90, 0x02}},
		{"unknown ext type", []byte{0xd7, 0x02, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"queue ext of 4 bytes", []byte{0xd6, 0x01, 0, 0, 0, 1}},
		{"queue ext8 of 9 bytes", cat([]byte{0xc7, 9, 0x01}, make([]byte, 9))},
		{"negative queue id", queueExt(1 << 63)},
		{"truncated queue ext", []byte{0xd7, 0x01, 0, 0}},
		{"ext32 header only", cat([]byte{0xc9}, be32(math.MaxUint32), []byte{0x01})},
		{"nesting beyond the limit", nestWire(protocol.MaxDepth+1, []byte{0x01})},
		{"deep nesting", nestWire(100000, []byte{0xc0})},
	}
}

func TestCodecDecodeMalformed(t *testing.T) {
	c := protocol.Codec{Queue: func(id int64) any { return id }}
	for _, tc := range malformedValues() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Unmarshal(tc.wire)
			wantCode(t, err, protocol.CodeProtocol)
			if v != nil {
				t.Errorf("got value %s alongside the error", show(v))
			}
		})
	}
}

// The integer bounds are the same on the way in and on the way out, so that
// any value a peer can decode is one it could also have sent.
func TestCodecDecodedValuesReencode(t *testing.T) {
	c := queueCodec()
	for _, tc := range decodeCases() {
		v, err := c.Unmarshal(tc.wire)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := c.Marshal(v, protocol.Fallback)
		if err != nil {
			t.Fatalf("%s: Marshal(%s): %v", tc.name, show(v), err)
		}
		again, err := c.Unmarshal(b)
		if err != nil || !valuesEqual(again, v) {
			t.Errorf("%s: second round trip = %s, %v; want %s", tc.name, show(again), err, show(v))
		}
	}
}

func TestNormalizeNumber(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want any
	}{
		{0, int64(0)},
		{math.Copysign(0, -1), math.Copysign(0, -1)},
		{1, int64(1)},
		{-1, int64(-1)},
		{maxSafe, int64(maxSafe)},
		{-maxSafe, int64(-maxSafe)},
		{maxSafe + 1, float64(maxSafe + 1)},
		{-maxSafe - 1, float64(-maxSafe - 1)},
		{0.5, 0.5},
		{-2.5, -2.5},
		{math.Inf(1), math.Inf(1)},
		{math.NaN(), math.NaN()},
	} {
		if got := protocol.NormalizeNumber(tc.in); !valuesEqual(got, tc.want) {
			t.Errorf("NormalizeNumber(%v) = %s, want %s", tc.in, show(got), show(tc.want))
		}
	}
}

// A length prefix is a claim, not a fact: a few bytes that declare a long
// string must not make the decoder allocate that much up front (with a
// 32-bit length, 4 GiB from a 6-byte message). Memory grows with the bytes
// actually present, as msgpack's own string decoding does.
func TestDecodeBoundsAllocationByInput(t *testing.T) {
	const declared = 64 << 20
	inputs := []malformedCase{
		{"str32", cat([]byte{0xdb}, be32(declared), []byte("a"))},
		{"bin32", cat([]byte{0xc6}, be32(declared), []byte("a"))},
		{"map key", cat([]byte{0x81, 0xdb}, be32(declared), []byte("a"))},
		{"in a list", cat([]byte{0x91, 0xc6}, be32(declared), []byte("a"))},
	}
	L := newLuaState(t)
	decoders := map[string]func([]byte) error{
		"Codec": func(b []byte) error { _, err := (&protocol.Codec{}).Unmarshal(b); return err },
		"LuaCodec": func(b []byte) error {
			_, err := (&protocol.LuaCodec{}).Unmarshal(L, b)
			return err
		},
	}
	for dname, decode := range decoders {
		for _, tc := range inputs {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := decode(tc.wire)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Errorf("%s %s: truncated input accepted", dname, tc.name)
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
				t.Errorf("%s %s: %d input bytes allocated %d MiB", dname, tc.name, len(tc.wire), d>>20)
			}
		}
	}
}

func TestCodecMarshalList(t *testing.T) {
	c := queueCodec()
	b, err := c.MarshalList([]any{1, "a", &fakeQueue{id: 2}, nil}, protocol.Strict)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{int64(1), "a", protocol.QueueRef{ID: 2}, nil}; !valuesEqual(got, want) {
		t.Errorf("got %s, want %s", show(got), show(want))
	}
	if b, err := c.MarshalList(nil, protocol.Strict); err != nil || !bytes.Equal(b, []byte{0x90}) {
		t.Errorf("MarshalList(nil) = %x, %v; want 90", b, err)
	}
	_, err = c.MarshalList([]any{map[string]any{}}, protocol.Strict)
	wantCode(t, err, protocol.CodeNotShareable)
	if _, err := c.MarshalList([]any{map[string]any{}}, protocol.Fallback); err != nil {
		t.Errorf("fallback: %v", err)
	}
}

func TestQueueIDs(t *testing.T) {
	c := queueCodec()
	b, err := c.Marshal(map[string]any{
		"list": []any{&fakeQueue{id: 1}, "x", []any{&fakeQueue{id: 2}}},
	}, protocol.Fallback)
	if err != nil {
		t.Fatal(err)
	}
	if got := protocol.QueueIDs(b); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("QueueIDs = %v, want [1 2]", got)
	}
	// Bytes that look like an ext header inside a string are not a queue.
	b, _ = c.Marshal([]any{"\xd7\x01\x00\x00\x00\x00\x00\x00\x00\x09"}, protocol.Fallback)
	if got := protocol.QueueIDs(b); len(got) != 0 {
		t.Errorf("QueueIDs of a string = %v", got)
	}
	if got := protocol.QueueIDs([]byte{0x93, 0x01, 0x02, 0x03}); len(got) != 0 {
		t.Errorf("QueueIDs without queues = %v", got)
	}
	// Malformed input yields the handles before the fault and never panics.
	b, _ = c.Marshal([]any{&fakeQueue{id: 5}, &fakeQueue{id: 6}}, protocol.Fallback)
	if got := protocol.QueueIDs(b[:len(b)-3]); fmt.Sprint(got) != "[5]" {
		t.Errorf("QueueIDs of a truncated list = %v, want [5]", got)
	}
	deep := nestWire(100000, queueExt(3))
	if got := protocol.QueueIDs(deep); len(got) != 0 {
		t.Errorf("QueueIDs found %v beyond the nesting limit", got)
	}
	for _, tc := range malformedValues() {
		protocol.QueueIDs(tc.wire)
	}
}
