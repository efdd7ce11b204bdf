package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora in testdata/fuzz from fuzzSeeds")

// allocLimit is how much a decoder may allocate for an input of n bytes:
// containers pre-size up to a bound and readers grow in steps, so memory
// follows the input, never a length the input merely declares.
func allocLimit(n int) uint64 { return 8<<20 + 16<<10*uint64(n) }

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func wantProtocolError(t *testing.T, err error) {
	t.Helper()
	var e *protocol.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeProtocol {
		t.Fatalf("error %T %v, want a *protocol.Error with code %q", err, err, protocol.CodeProtocol)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := protocol.DecodeMessage(data)
		if err != nil {
			wantProtocolError(t, err)
			if m != nil {
				t.Fatalf("message alongside an error: %+v", m)
			}
			return
		}
		frame, err := protocol.AppendMessage(nil, m)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
		if int(binary.BigEndian.Uint32(frame)) != len(frame)-4 {
			t.Fatalf("length prefix of %x", frame)
		}
		again, err := protocol.DecodeMessage(frame[4:])
		if err != nil {
			t.Fatalf("decoding the re-encoded %x: %v", frame[4:], err)
		}
		want := *m
		if want.Error != nil {
			// An error response carries no result.
			want.Body = []byte{0xc0}
		}
		if !reflect.DeepEqual(*again, want) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", *again, want)
		}
	})
}

var (
	bigFrameOnce sync.Once
	bigFrame     []byte
)

func FuzzReadFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for off := 0; ; {
			rest := data[off:]
			var buf []byte
			if len(rest) >= 4 {
				if n := binary.BigEndian.Uint32(rest); n > 1<<20 && n <= protocol.MaxFrameSize && int(n) > len(rest)-4 {
					// A frame longer than the input: lend a buffer so that
					// each such input does not allocate up to MaxFrameSize.
					bigFrameOnce.Do(func() { bigFrame = make([]byte, protocol.MaxFrameSize) })
					buf = bigFrame
				}
			}
			body, err := protocol.ReadFrame(r, buf)
			switch {
			case len(rest) == 0:
				if err != io.EOF {
					t.Fatalf("at the end of input: %v, want io.EOF", err)
				}
				return
			case len(rest) < 4:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("partial header: %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			n := binary.BigEndian.Uint32(rest)
			switch {
			case n > protocol.MaxFrameSize:
				if !errors.Is(err, protocol.ErrFrameTooLarge) {
					t.Fatalf("length %d: %v, want ErrFrameTooLarge", n, err)
				}
				return
			case int(n) > len(rest)-4:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("truncated body: %v, want io.ErrUnexpectedEOF", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("complete frame of %d bytes: %v", n, err)
			}
			if !bytes.Equal(body, rest[4:4+n]) {
				t.Fatalf("body %x, want %x", body, rest[4:4+n])
			}
			var w bytes.Buffer
			if err := protocol.WriteFrame(&w, body); err != nil || !bytes.Equal(w.Bytes(), rest[:4+n]) {
				t.Fatalf("WriteFrame gives %x, %v; want %x", w.Bytes(), err, rest[:4+n])
			}
			off += 4 + int(n)
		}
	})
}

// checkNormalised fails t unless v is in the normalised Go form.
func checkNormalised(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case nil, bool, string:
	case int64:
		if x > protocol.MaxSafeInt || x < -protocol.MaxSafeInt {
			t.Fatalf("integer %d beyond ±(2^53-1)", x)
		}
	case float64:
		if _, isInt := protocol.NormalizeNumber(x).(int64); isInt {
			t.Fatalf("integral float %v not normalised to int64", x)
		}
	case []any:
		if x == nil {
			t.Fatal("nil []any")
		}
		for _, e := range x {
			checkNormalised(t, e)
		}
	case map[string]any:
		if x == nil {
			t.Fatal("nil map")
		}
		for _, e := range x {
			checkNormalised(t, e)
		}
	case protocol.QueueRef:
		if x.ID < 0 {
			t.Fatalf("negative queue id %d", x.ID)
		}
	default:
		t.Fatalf("%T is not a normalised value", v)
	}
}

func FuzzCodecUnmarshal(f *testing.F) {
	c := queueCodec()
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		var err error
		if n := allocated(func() { v, err = c.Unmarshal(data) }); n > allocLimit(len(data)) {
			t.Fatalf("%d input bytes allocated %d bytes", len(data), n)
		}
		if err != nil {
			wantProtocolError(t, err)
			if v != nil {
				t.Fatalf("value alongside an error: %s", show(v))
			}
			return
		}
		checkNormalised(t, v)
		b, err := c.Marshal(v, protocol.Fallback)
		if err != nil {
			t.Fatalf("a decoded value cannot be sent back: %s: %v", show(v), err)
		}
		again, err := c.Unmarshal(b)
		if err != nil {
			t.Fatalf("decoding the re-encoded %x: %v", b, err)
		}
		if !valuesEqual(again, v) {
			t.Fatalf("round trip changed the value:\n got %s\nwant %s", show(again), show(v))
		}
	})
}

// luaForm is what a Lua table built from the normalised Go value v looks
// like when it is sent back: Lua tables hold no nil, so nil map entries and
// trailing nil list items vanish and an empty map is an empty list. ok is
// false when the table has holes and cannot be sent back at all.
func luaForm(v any) (out any, ok bool) {
	switch x := v.(type) {
	case []any:
		n := len(x)
		for n > 0 && x[n-1] == nil {
			n--
		}
		list := make([]any, 0, n)
		for _, e := range x[:n] {
			if e == nil {
				return nil, false
			}
			f, ok := luaForm(e)
			if !ok {
				return nil, false
			}
			list = append(list, f)
		}
		return list, true
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			if e == nil {
				continue
			}
			f, ok := luaForm(e)
			if !ok {
				return nil, false
			}
			m[k] = f
		}
		if len(m) == 0 {
			return []any{}, true
		}
		return m, true
	}
	return v, true
}

func FuzzLuaCodecUnmarshal(f *testing.F) {
	goc := queueCodec()
	f.Fuzz(func(t *testing.T, data []byte) {
		L := lua.NewState(lua.Options{SkipOpenLibs: true})
		defer L.Close()
		c := newLuaCodec(L)

		want, goErr := goc.Unmarshal(data)
		var lv lua.LValue
		var err error
		if n := allocated(func() { lv, err = c.Unmarshal(L, data) }); n > allocLimit(len(data)) {
			t.Fatalf("%d input bytes allocated %d bytes", len(data), n)
		}
		if (err == nil) != (goErr == nil) {
			t.Fatalf("Lua decoder: %v; Go decoder: %v", err, goErr)
		}
		if err != nil {
			wantProtocolError(t, err)
			if lv != lua.LNil {
				t.Fatalf("value alongside an error: %s", lv.Type())
			}
		} else {
			expect, ok := luaForm(want)
			out, err := c.Marshal(lv)
			if !ok {
				wantCode(t, err, protocol.CodeNotShareable)
			} else {
				if err != nil {
					t.Fatalf("Lua cannot send back %s: %v", show(want), err)
				}
				got, err := goc.Unmarshal(out)
				if err != nil {
					t.Fatalf("decoding what Lua sent, %x: %v", out, err)
				}
				if !valuesEqual(got, expect) {
					t.Fatalf("through Lua:\n got %s\nwant %s", show(got), show(expect))
				}
			}
		}

		vs, err := c.UnmarshalList(L, data)
		list, isList := want.([]any)
		if isList && len(data) > 0 && (data[0]&0xf0 == 0x80 || data[0] == 0xde || data[0] == 0xdf) {
			// An empty map decodes to [] in Go, but a list of values on
			// the wire is an array.
			isList = false
		}
		if goErr == nil && want == nil {
			// A nil where a list is expected is taken as no values.
			isList = true
		}
		if (err == nil) != (goErr == nil && isList) {
			t.Fatalf("UnmarshalList: %v; Go decoder: %s, %v", err, show(want), goErr)
		}
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		if len(vs) != len(list) {
			t.Fatalf("UnmarshalList gave %d values, want %d", len(vs), len(list))
		}
		expect := make([]any, len(list))
		allOK := true
		for i, e := range list {
			if e == nil {
				continue // a nil argument is kept as such
			}
			var ok bool
			if expect[i], ok = luaForm(e); !ok {
				allOK = false
			}
		}
		out, err := c.MarshalList(vs)
		if !allOK {
			wantCode(t, err, protocol.CodeNotShareable)
			return
		}
		if err != nil {
			t.Fatalf("MarshalList: %v", err)
		}
		got, err := goc.Unmarshal(out)
		if err != nil || !valuesEqual(got, expect) {
			t.Fatalf("MarshalList round trip: %s, %v; want %s", show(got), err, show(expect))
		}
	})
}

// fuzzSeeds returns the committed seed corpora: fuzz target → file name →
// input. Values have at most one map key, so that the encoding is stable.
func fuzzSeeds(t testing.TB) map[string]map[string][]byte {
	msg := func(m protocol.Message) []byte { return encodeMessage(t, &m) }
	val := func(v any) []byte {
		b, err := queueCodec().Marshal(v, protocol.Fallback)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	args := val(protocol.Tuple{1, "two", []any{3.5, nil}, map[string]any{"k": []byte("v")}, &fakeQueue{id: 4}})
	call := mustMarshal(t, protocol.CallParams{Fn: "function(a, b) return a + b end", Args: args, TimeoutNs: 1e9})
	request := msg(protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: protocol.MethodCall, Body: call})
	response := msg(protocol.Message{Kind: protocol.KindResponse, ID: 1, Body: val([]any{map[string]any{"r": []any{}}})})

	values := map[string][]byte{
		"nil":            {0xc0},
		"bools":          val([]any{true, false}),
		"int-widths":     cat([]byte{0x99, 0x7f, 0xe0, 0xcc, 0xff}, []byte{0xcd}, be16(65535), []byte{0xce}, be32(math.MaxUint32), []byte{0xcf}, be64(maxSafe), []byte{0xd0, 0x80}, []byte{0xd1}, be16(0x8000), []byte{0xd2}, be32(0x80000000), []byte{0xd3}, be64(i64bits(-maxSafe))),
		"int-bounds":     val([]any{maxSafe, -maxSafe, 0, -1}),
		"beyond-2-53":    cat([]byte{0xcf}, be64(maxSafe+1)),
		"floats":         cat([]byte{0x97}, f32(3), f32(0.5), f64(-12), f64(0.1), f64(1<<53), f64(math.Inf(-1)), f64(math.NaN())),
		"negative-zero":  cat([]byte{0x92}, f64(math.Copysign(0, -1)), f32(float32(math.Copysign(0, -1)))),
		"strings":        cat([]byte{0x94}, fixstr("hi"), str8("héllo"), cat([]byte{0xda}, be16(1), []byte("x")), bin8("\x00\xff")),
		"empty":          cat([]byte{0x92, 0x90, 0x80}),
		"nested":         val(map[string]any{"a": []any{1, map[string]any{"b": []any{"c", []any{}}}}}),
		"bin-key-map":    cat([]byte{0x81}, bin8("k"), []byte{0x91, 0x02}),
		"wide-headers":   cat([]byte{0xdd}, be32(2), []byte{0xde}, be16(1), fixstr("k"), []byte{0xdc}, be16(0), []byte{0xdf}, be32(0)),
		"queue":          val([]any{&fakeQueue{id: 7}, map[string]any{"q": &fakeQueue{id: 1 << 40}}}),
		"bad-queue-ext":  []byte{0xd7, 0x02, 0, 0, 0, 0, 0, 0, 0, 1},
		"depth-limit":    nestWire(protocol.MaxDepth, []byte{0x01}),
		"depth-beyond":   nestWire(protocol.MaxDepth+1, []byte{0x01}),
		"int-map-key":    []byte{0x81, 0x01, 0x02},
		"trailing":       []byte{0x01, 0x02},
		"truncated":      []byte{0x93, 0x01, 0xa5, 'a'},
		"call-arguments": args,
	}
	luaValues := map[string][]byte{
		"list-with-hole":     []byte{0x93, 0x01, 0xc0, 0x03},
		"list-trailing-nil":  []byte{0x92, 0x01, 0xc0},
		"list-of-nils":       []byte{0x92, 0xc0, 0xc0},
		"map-nil-value":      cat([]byte{0x81}, fixstr("k"), []byte{0xc0}),
		"empty-map-in-list":  []byte{0x91, 0x80},
		"numeric-string-key": cat([]byte{0x81}, fixstr("1"), []byte{0x01}),
	}
	for k, v := range values {
		luaValues[k] = v
	}

	stream := func(bodies ...[]byte) []byte {
		var w bytes.Buffer
		for _, b := range bodies {
			if err := protocol.WriteFrame(&w, b); err != nil {
				t.Fatal(err)
			}
		}
		return w.Bytes()
	}
	return map[string]map[string][]byte{
		"FuzzDecodeMessage": {
			"request-call":   request,
			"request-exec":   msg(protocol.Message{Kind: protocol.KindRequest, ID: 2, Method: protocol.MethodExec, Body: mustMarshal(t, protocol.ExecParams{Source: "x = 1", TimeoutNs: 5})}),
			"request-nil":    msg(protocol.Message{Kind: protocol.KindRequest, ID: math.MaxUint32, Method: protocol.MethodStats}),
			"response":       response,
			"response-error": msg(protocol.Message{Kind: protocol.KindResponse, ID: 3, Error: fullError()}),
			"response-code":  msg(protocol.Message{Kind: protocol.KindResponse, ID: 4, Error: &protocol.Error{Code: protocol.CodeQueueEmpty}}),
			"error-no-code":  cat([]byte{0x94, 0x01, 0x05, 0x81}, fixstr("msg"), fixstr("x"), []byte{0xc0}),
			"output":         msg(protocol.Message{Kind: protocol.KindNotification, Method: protocol.NotifyOutput, Body: mustMarshal(t, []byte("hello\n"))}),
			"cancel":         msg(protocol.Message{Kind: protocol.KindNotification, Method: protocol.MethodCancel, Body: mustMarshal(t, uint32(1))}),
			"deep-body":      cat([]byte{0x93, 0x02, 0xa1, 'n'}, nestWire(300, []byte{0xc0})),
			"unknown-kind":   []byte{0x94, 0x03, 0x01, 0xa1, 'm', 0xc0},
			"short-array":    []byte{0x93, 0x00, 0x01, 0xa1, 'm'},
			"trailing":       append(bytes.Clone(request), 0x00),
			"truncated":      request[:len(request)/2],
			"empty":          {},
		},
		"FuzzReadFrame": {
			"one-frame":        stream(request),
			"two-frames":       stream(request, response),
			"empty-frame":      stream(nil),
			"empty-then-frame": stream(nil, []byte{0xc0}),
			"partial-header":   {0, 0},
			"header-only":      be32(8),
			"truncated-body":   cat(be32(8), []byte("abc")),
			"oversize":         be32(protocol.MaxFrameSize + 1),
			"max-length":       be32(protocol.MaxFrameSize),
			"frame-then-junk":  append(stream([]byte("ok")), 0xff, 0xff),
			"empty":            {},
		},
		"FuzzCodecUnmarshal":    values,
		"FuzzLuaCodecUnmarshal": luaValues,
	}
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// TestFuzzSeedCorpus keeps the committed corpora in step with fuzzSeeds;
// run with -update-seeds to rewrite them.
func TestFuzzSeedCorpus(t *testing.T) {
	seeds := fuzzSeeds(t)
	targets := make([]string, 0, len(seeds))
	for name := range seeds {
		targets = append(targets, name)
	}
	sort.Strings(targets)
	for _, target := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if len(seeds[target]) < 8 {
			t.Errorf("%s: only %d seeds", target, len(seeds[target]))
		}
		for name, data := range seeds[target] {
			path := filepath.Join(dir, "seed-"+name)
			want := corpusFile(data)
			if *updateSeeds {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("%v (run with -update-seeds)", err)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (run with -update-seeds)", path)
			}
		}
	}
}
