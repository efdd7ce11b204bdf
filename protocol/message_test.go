package protocol_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// encodeMessage returns m's frame body, checking the length prefix.
func encodeMessage(t testing.TB, m *protocol.Message) []byte {
	t.Helper()
	frame, err := protocol.AppendMessage(nil, m)
	if err != nil {
		t.Fatalf("AppendMessage: %v", err)
	}
	if len(frame) < 4 || int(binary.BigEndian.Uint32(frame)) != len(frame)-4 {
		t.Fatalf("bad length prefix in %x", frame)
	}
	return frame[4:]
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fullError() *protocol.Error {
	return &protocol.Error{
		Code:          protocol.CodeExecutionFailed,
		Msg:           "spam",
		Type:          "ValueError",
		Formatted:     "ValueError: spam",
		Errdisplay:    "stack traceback:\n\t[G]: in function 'error'",
		Cause:         protocol.CodeMemoryLimit,
		ExitCode:      -1,
		Signal:        "killed",
		StderrTail:    "fatal: out of memory\n",
		InterpreterID: 1 << 40,
	}
}

func TestMessageRoundTrip(t *testing.T) {
	args := mustMarshal(t, protocol.CallParams{Fn: "f", Args: mustMarshal(t, []any{1, "x"}), TimeoutNs: 5})
	for _, tc := range []struct {
		name string
		in   protocol.Message
		want protocol.Message // the in message when zero
	}{
		{name: "request", in: protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: protocol.MethodCall, Body: args}},
		{name: "request without params", in: protocol.Message{Kind: protocol.KindRequest, ID: 7, Method: "m"},
			want: protocol.Message{Kind: protocol.KindRequest, ID: 7, Method: "m", Body: []byte{0xc0}}},
		{name: "request, max id, empty method", in: protocol.Message{Kind: protocol.KindRequest, ID: math.MaxUint32, Method: "", Body: []byte{0x90}}},
		{name: "request, id 0, unicode method", in: protocol.Message{Kind: protocol.KindRequest, ID: 0, Method: "méthode", Body: []byte{0x01}}},
		{name: "request ignores Error", in: protocol.Message{Kind: protocol.KindRequest, ID: 2, Method: "m", Error: fullError(), Body: []byte{0x01}},
			want: protocol.Message{Kind: protocol.KindRequest, ID: 2, Method: "m", Body: []byte{0x01}}},
		{name: "response", in: protocol.Message{Kind: protocol.KindResponse, ID: 3, Body: mustMarshal(t, map[string]any{"a": []int{1}})}},
		{name: "response without result", in: protocol.Message{Kind: protocol.KindResponse, ID: 3},
			want: protocol.Message{Kind: protocol.KindResponse, ID: 3, Body: []byte{0xc0}}},
		{name: "error response", in: protocol.Message{Kind: protocol.KindResponse, ID: 4, Error: fullError()},
			want: protocol.Message{Kind: protocol.KindResponse, ID: 4, Error: fullError(), Body: []byte{0xc0}}},
		{name: "error response drops the result", in: protocol.Message{Kind: protocol.KindResponse, ID: 4, Error: &protocol.Error{Code: protocol.CodeQueueEmpty}, Body: []byte{0x05}},
			want: protocol.Message{Kind: protocol.KindResponse, ID: 4, Error: &protocol.Error{Code: protocol.CodeQueueEmpty}, Body: []byte{0xc0}}},
		{name: "notification", in: protocol.Message{Kind: protocol.KindNotification, Method: protocol.NotifyOutput, Body: mustMarshal(t, []byte("out\n"))}},
		{name: "notification ignores ID", in: protocol.Message{Kind: protocol.KindNotification, ID: 9, Method: protocol.MethodCancel, Body: []byte{0x09}},
			want: protocol.Message{Kind: protocol.KindNotification, Method: protocol.MethodCancel, Body: []byte{0x09}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if want.Body == nil {
				want = tc.in
			}
			body := encodeMessage(t, &tc.in)
			got, err := protocol.DecodeMessage(body)
			if err != nil {
				t.Fatalf("DecodeMessage(%x): %v", body, err)
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
			// Body aliases the frame rather than copying it.
			if len(got.Body) > 0 && &got.Body[len(got.Body)-1] != &body[len(body)-1] {
				t.Error("Body does not alias the frame")
			}
		})
	}
}

func TestMessageErrorFieldsSurvive(t *testing.T) {
	want := fullError()
	got, err := protocol.DecodeMessage(encodeMessage(t, &protocol.Message{Kind: protocol.KindResponse, ID: 1, Error: want}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Error == nil || *got.Error != *want {
		t.Errorf("got %+v, want %+v", got.Error, want)
	}

	// A peer that leaves the code out still yields a classified error.
	body := cat([]byte{0x94, 0x01, 0x05, 0x81}, fixstr("msg"), fixstr("x"), []byte{0xc0})
	got, err = protocol.DecodeMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Error == nil || got.Error.Code != protocol.CodeProtocol || got.Error.Msg != "x" {
		t.Errorf("codeless error decoded as %+v", got.Error)
	}

	// Fields this version does not know are skipped, not fatal.
	body = cat([]byte{0x94, 0x01, 0x05, 0x82}, fixstr("code"), fixstr("cpu_limit"), fixstr("new"), []byte{0x92, 0x01, 0x02, 0xc0})
	got, err = protocol.DecodeMessage(body)
	if err != nil || got.Error == nil || got.Error.Code != protocol.CodeCPULimit {
		t.Errorf("error with an unknown field: %+v, %v", got, err)
	}
}

func TestAppendMessageAppends(t *testing.T) {
	prefix := []byte("keep")
	m := protocol.Message{Kind: protocol.KindNotification, Method: "n", Body: []byte{0x01}}
	out, err := protocol.AppendMessage(prefix, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte("keep")) {
		t.Fatalf("prefix lost: %x", out)
	}
	body, err := protocol.ReadFrame(bytes.NewReader(out[4:]), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := protocol.DecodeMessage(body); err != nil || got.Method != "n" {
		t.Errorf("decoded %+v, %v", got, err)
	}

	out, err = protocol.AppendMessage(prefix, &protocol.Message{Kind: 3})
	if err == nil {
		t.Error("AppendMessage accepted kind 3")
	}
	if !bytes.Equal(out, prefix) {
		t.Errorf("dst changed on error: %x", out)
	}
}

func TestDecodeMessageMalformed(t *testing.T) {
	req := func(parts ...[]byte) []byte { return cat(append([][]byte{{0x94}}, parts...)...) }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"nil", []byte{0xc0}},
		{"not an array", fixstr("hello")},
		{"a map", []byte{0x81, 0xa1, 'k', 0x00}},
		{"empty array", []byte{0x90}},
		{"array of one kind", []byte{0x91, 0x00}},
		{"request of 3", []byte{0x93, 0x00, 0x01, 0xa1, 'm'}},
		{"request of 5", []byte{0x95, 0x00, 0x01, 0xa1, 'm', 0xc0, 0xc0}},
		{"response of 3", []byte{0x93, 0x01, 0x01, 0xc0}},
		{"notification of 4", []byte{0x94, 0x02, 0xa1, 'm', 0xc0, 0xc0}},
		{"notification of 2", []byte{0x92, 0x02, 0xa1, 'm'}},
		{"unknown kind 3", req([]byte{0x03, 0x01, 0xa1, 'm', 0xc0})},
		{"unknown kind 255", req([]byte{0xcc, 0xff, 0x01, 0xa1, 'm', 0xc0})},
		{"negative kind", req([]byte{0xff, 0x01, 0xa1, 'm', 0xc0})},
		{"kind as a string", req(fixstr("0"), []byte{0x01, 0xa1, 'm', 0xc0})},
		{"kind as a float", req(f64(0), []byte{0x01, 0xa1, 'm', 0xc0})},
		{"id as a string", req([]byte{0x00}, fixstr("1"), []byte{0xa1, 'm', 0xc0})},
		{"id as an array", req([]byte{0x00, 0x90, 0xa1, 'm', 0xc0})},
		{"method as an int", req([]byte{0x00, 0x01, 0x07, 0xc0})},
		{"method as an array", req([]byte{0x00, 0x01, 0x90, 0xc0})},
		{"notification method as an int", []byte{0x93, 0x02, 0x07, 0xc0}},
		{"error as an int", []byte{0x94, 0x01, 0x01, 0x07, 0xc0}},
		{"error as a string", []byte{0x94, 0x01, 0x01, 0xa1, 'x', 0xc0}},
		{"error code as an int", cat([]byte{0x94, 0x01, 0x01, 0x81}, fixstr("code"), []byte{0x05, 0xc0})},
		{"error as a short array", cat([]byte{0x94, 0x01, 0x01, 0x92}, fixstr("a"), fixstr("b"), []byte{0xc0})},
		{"truncated error", []byte{0x94, 0x01, 0x01, 0x82, 0xa4, 'c', 'o'}},
		{"no body", []byte{0x94, 0x00, 0x01, 0xa1, 'm'}},
		{"truncated body", []byte{0x94, 0x00, 0x01, 0xa1, 'm', 0x92, 0x01}},
		{"truncated string body", []byte{0x93, 0x02, 0xa1, 'm', 0xa5, 'a'}},
		{"never-used code in body", []byte{0x94, 0x00, 0x01, 0xa1, 'm', 0xc1}},
		{"trailing byte", []byte{0x94, 0x00, 0x01, 0xa1, 'm', 0xc0, 0x00}},
		{"two messages", []byte{0x93, 0x02, 0xa1, 'm', 0xc0, 0x93, 0x02, 0xa1, 'm', 0xc0}},
		{"huge array header", cat([]byte{0xdd}, be32(math.MaxUint32), []byte{0x00})},
		{"huge body string", cat([]byte{0x93, 0x02, 0xa1, 'm', 0xdb}, be32(math.MaxUint32), []byte("abc"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := protocol.DecodeMessage(tc.in)
			wantCode(t, err, protocol.CodeProtocol)
			if m != nil {
				t.Errorf("got %+v alongside the error", m)
			}
		})
	}
}

// The header fields have exact types: msgpack's decoder would read nil as
// 0 and cut wider integers down to size, which turns garbage into a valid
// request, or a response into the answer to another call.
func TestDecodeMessageHeaderTypesAreExact(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"nil kind", []byte{0x94, 0xc0, 0x01, 0xa1, 'm', 0xc0}},
		{"kind 256", cat([]byte{0x94, 0xcd}, be16(256), []byte{0x01, 0xa1, 'm', 0xc0})},
		{"kind 257", cat([]byte{0x94, 0xcd}, be16(257), []byte{0x01, 0xc0, 0xc0})},
		{"nil id", []byte{0x94, 0x00, 0xc0, 0xa1, 'm', 0xc0}},
		{"id 2^32+5", cat([]byte{0x94, 0x01, 0xcf}, be64(1<<32+5), []byte{0xc0, 0xc0})},
		{"id -1", []byte{0x94, 0x01, 0xff, 0xc0, 0xc0}},
		{"nil method", []byte{0x94, 0x00, 0x01, 0xc0, 0xc0}},
		{"nil notification method", []byte{0x93, 0x02, 0xc0, 0xc0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := protocol.DecodeMessage(tc.in)
			if err == nil {
				t.Fatalf("accepted as %+v", *m)
			}
			wantCode(t, err, protocol.CodeProtocol)
		})
	}
}

// Nesting in a body is bounded like nesting in a value: the decoder walks
// the body recursively, and a frame of a few megabytes of 0x91 would
// otherwise exhaust the goroutine stack and kill the process, which no
// recover can catch.
func TestDecodeMessageBoundsBodyNesting(t *testing.T) {
	deep := nestWire(100000, []byte{0xc0})
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"request body", cat([]byte{0x94, 0x00, 0x01, 0xa1, 'm'}, deep)},
		{"response result", cat([]byte{0x94, 0x01, 0x01, 0xc0}, deep)},
		{"notification body", cat([]byte{0x93, 0x02, 0xa1, 'm'}, deep)},
		{"unknown error field", cat([]byte{0x94, 0x01, 0x01, 0x81}, fixstr("x"), deep, []byte{0xc0})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := protocol.DecodeMessage(tc.in)
			if err == nil {
				t.Fatalf("accepted a body nested 100000 deep (kind %d)", m.Kind)
			}
			wantCode(t, err, protocol.CodeProtocol)
		})
	}
}

// The nesting a message may carry leaves room for the message and its
// params around the deepest argument the host sends, so the depth limit a
// value is checked against is not silently lowered on the wire.
func TestDeepestArgumentCrossesInARequest(t *testing.T) {
	arg := nestList(protocol.MaxDepth-1, "leaf")
	var c protocol.Codec
	args, err := c.MarshalList([]any{arg}, protocol.Fallback)
	if err != nil {
		t.Fatalf("MarshalList refuses the argument: %v", err)
	}
	body := mustMarshal(t, protocol.CallParams{Fn: "f", Args: args})
	m, err := protocol.DecodeMessage(encodeMessage(t, &protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: protocol.MethodCall, Body: body}))
	if err != nil {
		t.Fatalf("DecodeMessage: %v", err)
	}
	var p protocol.CallParams
	if err := msgpack.Unmarshal(m.Body, &p); err != nil {
		t.Fatal(err)
	}
	L := newLuaState(t)
	vs, err := newLuaCodec(L).UnmarshalList(L, p.Args)
	if err != nil || len(vs) != 1 {
		t.Fatalf("UnmarshalList: %d values, %v", len(vs), err)
	}
	back, err := newLuaCodec(L).Marshal(vs[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&protocol.Codec{}).Unmarshal(back)
	if err != nil || !valuesEqual(got, arg) {
		t.Errorf("argument came back as %s, %v", show(got), err)
	}
}

func TestDecodeMessageGarbageNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	valid := [][]byte{
		encodeMessage(t, &protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: "call", Body: mustMarshal(t, []any{1, "a", map[string]any{"k": []any{}}})}),
		encodeMessage(t, &protocol.Message{Kind: protocol.KindResponse, ID: 2, Error: fullError()}),
		encodeMessage(t, &protocol.Message{Kind: protocol.KindNotification, Method: "$out", Body: mustMarshal(t, []byte("x"))}),
	}
	for i := 0; i < 20000; i++ {
		var in []byte
		if i%2 == 0 {
			in = make([]byte, rng.Intn(40))
			rng.Read(in)
		} else {
			// Mutations of valid messages get past the header far more
			// often than random bytes do.
			in = bytes.Clone(valid[rng.Intn(len(valid))])
			for n := rng.Intn(4) + 1; n > 0; n-- {
				switch rng.Intn(3) {
				case 0:
					in[rng.Intn(len(in))] = byte(rng.Intn(256))
				case 1:
					in = in[:rng.Intn(len(in))]
				case 2:
					in = append(in, byte(rng.Intn(256)))
				}
				if len(in) == 0 {
					break
				}
			}
		}
		m, err := protocol.DecodeMessage(in)
		if err != nil {
			wantCode(t, err, protocol.CodeProtocol)
			if m != nil {
				t.Fatalf("%x: message alongside an error", in)
			}
		} else if m == nil {
			t.Fatalf("%x: nil message without an error", in)
		}
	}
}
