package protocol_test

import (
	"bytes"
	"math"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// luaQueue is what a worker puts in a queue handle's userdata.
type luaQueue struct{ id int64 }

func newLuaCodec(L *lua.LState) *protocol.LuaCodec {
	return &protocol.LuaCodec{
		QueueID: func(ud *lua.LUserData) (int64, bool) {
			q, ok := ud.Value.(*luaQueue)
			if !ok {
				return 0, false
			}
			return q.id, true
		},
		Queue: func(id int64) lua.LValue {
			ud := L.NewUserData()
			ud.Value = &luaQueue{id: id}
			return ud
		},
	}
}

func newLuaState(t testing.TB) *lua.LState {
	L := lua.NewState()
	t.Cleanup(L.Close)
	return L
}

// luaEval runs "return <expr>" after prelude and returns the one result.
func luaEval(t testing.TB, L *lua.LState, prelude, expr string) lua.LValue {
	t.Helper()
	if err := L.DoString(prelude + "\n__v = " + expr); err != nil {
		t.Fatalf("lua: %v", err)
	}
	v := L.GetGlobal("__v")
	L.SetGlobal("__v", lua.LNil)
	return v
}

func TestLuaCodecEncodesShareable(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	var goc protocol.Codec
	for _, tc := range []struct {
		name, prelude, expr string
		want                any
		wire                []byte // when set, the exact encoding
	}{
		{"nil", "", "nil", nil, []byte{0xc0}},
		{"true", "", "true", true, []byte{0xc3}},
		{"integral number", "", "1", int64(1), []byte{0x01}},
		{"integral number from arithmetic", "", "3 / 3 * 7", int64(7), []byte{0x07}},
		{"negative integer", "", "-200", int64(-200), []byte{0xd1, 0xff, 0x38}},
		{"half", "", "0.5", 0.5, f64(0.5)},
		{"max safe", "", "2^53 - 1", int64(maxSafe), nil},
		{"min safe", "", "-(2^53 - 1)", int64(-maxSafe), nil},
		{"2^53 stays a float", "", "2^53", float64(1 << 53), f64(1 << 53)},
		{"huge", "", "1e300", 1e300, nil},
		{"infinity", "", "1/0", math.Inf(1), nil},
		{"NaN", "", "0/0", math.NaN(), nil},
		{"string", "", `"héllo\0"`, "héllo\x00", nil},
		{"empty string", "", `""`, "", []byte{0xa0}},
		{"array", "", "{1, 2, 3}", []any{int64(1), int64(2), int64(3)}, []byte{0x93, 1, 2, 3}},
		{"explicit keys 1..n", "", "{[2] = 'b', [1] = 'a'}", []any{"a", "b"}, nil},
		{"map", "", "{a = 1, b = 'x'}", map[string]any{"a": int64(1), "b": "x"}, nil},
		{"numeric string keys", "", `{["1"] = true}`, map[string]any{"1": true}, nil},
		{"empty table", "", "{}", []any{}, []byte{0x90}},
		{"nested", "", "{list = {1, {}}, map = {x = {y = 0.25}}}",
			map[string]any{"list": []any{int64(1), []any{}}, "map": map[string]any{"x": map[string]any{"y": 0.25}}}, nil},
		{"shared subtable is not a cycle", "local t = {1}", "{t, t, {t}}",
			[]any{[]any{int64(1)}, []any{int64(1)}, []any{[]any{int64(1)}}}, nil},
		{"table after removing entries", "local t = {1, 2, 3}; t[3] = nil", "t", []any{int64(1), int64(2)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := luaEval(t, L, tc.prelude, tc.expr)
			b, err := c.Marshal(v)
			if err != nil {
				t.Fatalf("Marshal(%s): %v", tc.expr, err)
			}
			if tc.wire != nil && !bytes.Equal(b, tc.wire) {
				t.Errorf("wire %x, want %x", b, tc.wire)
			}
			got, err := goc.Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !valuesEqual(got, tc.want) {
				t.Errorf("%s → %s, want %s", tc.expr, show(got), show(tc.want))
			}
		})
	}
}

func TestLuaCodecNegativeZero(t *testing.T) {
	c := &protocol.LuaCodec{}
	b, err := c.Marshal(lua.LNumber(math.Copysign(0, -1)))
	if err != nil {
		t.Fatal(err)
	}
	var goc protocol.Codec
	got, err := goc.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := got.(float64); !ok || !math.Signbit(f) || f != 0 {
		t.Errorf("-0 came back as %s", show(got))
	}
}

func TestLuaCodecRejects(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	plainUD := L.NewUserData()
	plainUD.Value = "not a queue"
	co, cancel := L.NewThread()
	if cancel != nil {
		defer cancel()
	}
	for _, tc := range []struct {
		name, prelude, expr string
		v                   lua.LValue
	}{
		{name: "mixed keys", expr: "{1, 2, a = 3}"},
		{name: "sparse array", expr: "{[1] = 1, [3] = 3}"},
		{name: "array from 2", expr: "{[2] = 1}"},
		{name: "zero key", expr: "{[0] = 1}"},
		{name: "negative key", expr: "{[-1] = 1}"},
		{name: "fractional key", expr: "{[1.5] = 1}"},
		{name: "huge integer key", expr: "{[2^53] = 1}"},
		{name: "table key", expr: "{[{}] = 1}"},
		{name: "boolean key", expr: "{[true] = 1}"},
		{name: "function key", expr: "{[print] = 1}"},
		{name: "metatable", expr: "setmetatable({}, {})"},
		{name: "metatable on an array", expr: "setmetatable({1, 2}, {__index = function() end})"},
		{name: "nested metatable", expr: "{inner = setmetatable({}, {})}"},
		{name: "self cycle", prelude: "local t = {}; t.self = t", expr: "t"},
		{name: "array cycle", prelude: "local a = {}; local b = {a}; a[1] = b", expr: "a"},
		{name: "deep cycle", prelude: "local a = {x = {y = {}}}; a.x.y.z = a", expr: "a"},
		{name: "lua function", expr: "function() end"},
		{name: "go function", expr: "print"},
		{name: "function in a table", expr: "{1, function() end}"},
		{name: "coroutine", expr: "coroutine.create(function() end)"},
		{name: "coroutine in a map", expr: "{co = coroutine.create(function() end)}"},
		{name: "thread from Go", v: co},
		{name: "plain userdata", v: plainUD},
		{name: "channel", v: lua.LChannel(make(chan lua.LValue))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			if v == nil {
				v = luaEval(t, L, tc.prelude, tc.expr)
			}
			b, err := c.Marshal(v)
			wantCode(t, err, protocol.CodeNotShareable)
			if b != nil {
				t.Errorf("Marshal returned %x alongside the error", b)
			}
			_, err = c.MarshalList([]lua.LValue{lua.LNumber(1), v})
			wantCode(t, err, protocol.CodeNotShareable)
			if c.IsShareable(v) {
				t.Errorf("IsShareable = true")
			}
		})
	}

	// Without a QueueID hook even a queue handle is plain userdata.
	ud := L.NewUserData()
	ud.Value = &luaQueue{id: 1}
	_, err := (&protocol.LuaCodec{}).Marshal(ud)
	wantCode(t, err, protocol.CodeNotShareable)
}

func luaNest(L *lua.LState, levels int, leaf lua.LValue) lua.LValue {
	t := L.NewTable()
	if leaf != nil {
		t.Append(leaf)
	}
	for i := 1; i < levels; i++ {
		outer := L.NewTable()
		outer.Append(t)
		t = outer
	}
	return t
}

func TestLuaCodecDepth(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	var goc protocol.Codec

	// The Lua side accepts exactly what the Go side accepts.
	b, err := c.Marshal(luaNest(L, protocol.MaxDepth, lua.LNumber(1)))
	if err != nil {
		t.Fatalf("%d nested tables: %v", protocol.MaxDepth, err)
	}
	if got, err := goc.Unmarshal(b); err != nil || !valuesEqual(got, nestList(protocol.MaxDepth, int64(1))) {
		t.Fatalf("Unmarshal: %v", err)
	}
	if err := goc.Check(nestList(protocol.MaxDepth+1, int64(1)), protocol.Fallback); err == nil {
		t.Fatal("Go codec accepts a scalar under MaxDepth+1 lists")
	}
	_, err = c.Marshal(luaNest(L, protocol.MaxDepth+1, lua.LNumber(1)))
	wantCode(t, err, protocol.CodeNotShareable)
	_, err = c.Marshal(luaNest(L, 1000, nil))
	wantCode(t, err, protocol.CodeNotShareable)
}

// The deepest value the Go codec sends (MaxDepth+1 lists, the innermost
// empty) decodes into Lua, so Lua must be able to send it back: otherwise an
// argument that was accepted makes the identity function fail.
func TestLuaCodecDepthLimitMatchesGo(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	var goc protocol.Codec
	v := nestList(protocol.MaxDepth+1, nil)
	b, err := goc.Marshal(v, protocol.Fallback)
	if err != nil {
		t.Skipf("Go codec refuses %d nested lists: %v", protocol.MaxDepth+1, err)
	}
	lv, err := c.Unmarshal(L, b)
	if err != nil {
		t.Fatalf("Lua decode of what Go sent: %v", err)
	}
	back, err := c.Marshal(lv)
	if err != nil {
		t.Fatalf("Lua cannot send back the value it received: %v", err)
	}
	if !bytes.Equal(back, b) {
		t.Errorf("sent back %x, want %x", back, b)
	}
}

func TestLuaCodecQueues(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	ud := L.NewUserData()
	ud.Value = &luaQueue{id: 9}
	if !c.IsShareable(ud) {
		t.Error("a queue handle is strict-tier shareable")
	}
	b, err := c.Marshal(ud)
	if err != nil {
		t.Fatal(err)
	}
	if want := queueExt(9); !bytes.Equal(b, want) {
		t.Fatalf("wire %x, want %x", b, want)
	}

	goc := protocol.Codec{}
	if got, err := goc.Unmarshal(b); err != nil || got != (protocol.QueueRef{ID: 9}) {
		t.Errorf("Go side got %s, %v", show(got), err)
	}

	// A queue nested in a table, from Go to Lua via the Queue hook.
	wire, err := queueCodec().Marshal(map[string]any{"q": &fakeQueue{id: 77}}, protocol.Fallback)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := c.Unmarshal(L, wire)
	if err != nil {
		t.Fatal(err)
	}
	tbl, ok := lv.(*lua.LTable)
	if !ok {
		t.Fatalf("got %s, want a table", lv.Type())
	}
	q, ok := tbl.RawGetString("q").(*lua.LUserData)
	if !ok {
		t.Fatalf("q is %s, want userdata", tbl.RawGetString("q").Type())
	}
	if lq, ok := q.Value.(*luaQueue); !ok || lq.id != 77 {
		t.Errorf("userdata holds %#v, want queue 77", q.Value)
	}

	// Without a Queue hook a queue on the wire has nowhere to go.
	_, err = (&protocol.LuaCodec{}).Unmarshal(L, wire)
	wantCode(t, err, protocol.CodeProtocol)
}

func TestLuaCodecIsShareable(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{"nil", true},
		{"false", true},
		{"1", true},
		{"0.5", true},
		{"2^60", true},
		{"'s'", true},
		{"{}", false},
		{"{1}", false},
		{"{a = 1}", false},
		{"print", false},
		{"function() end", false},
		{"coroutine.create(function() end)", false},
	} {
		if got := c.IsShareable(luaEval(t, L, "", tc.expr)); got != tc.want {
			t.Errorf("IsShareable(%s) = %v, want %v", tc.expr, got, tc.want)
		}
	}
	if c.IsShareable(L.NewUserData()) {
		t.Error("plain userdata is not shareable")
	}
}

func TestLuaCodecUnmarshal(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	check := func(name string, wire []byte, f func(lua.LValue) bool) {
		t.Helper()
		v, err := c.Unmarshal(L, wire)
		if err != nil {
			t.Errorf("%s: Unmarshal(%x): %v", name, wire, err)
			return
		}
		if !f(v) {
			t.Errorf("%s: Unmarshal(%x) = %s %v", name, wire, v.Type(), v)
		}
	}
	check("nil", []byte{0xc0}, func(v lua.LValue) bool { return v == lua.LNil })
	check("true", []byte{0xc3}, func(v lua.LValue) bool { return v == lua.LTrue })
	check("uint8", []byte{0xcc, 200}, func(v lua.LValue) bool { return v == lua.LNumber(200) })
	check("int64", cat([]byte{0xd3}, be64(i64bits(-maxSafe))), func(v lua.LValue) bool { return v == lua.LNumber(-maxSafe) })
	check("float", f64(0.5), func(v lua.LValue) bool { return v == lua.LNumber(0.5) })
	check("float32", f32(1.25), func(v lua.LValue) bool { return v == lua.LNumber(1.25) })
	check("str", fixstr("abc"), func(v lua.LValue) bool { return v == lua.LString("abc") })
	check("bin", bin8("\x00\x01"), func(v lua.LValue) bool { return v == lua.LString("\x00\x01") })
	check("empty array", []byte{0x90}, func(v lua.LValue) bool {
		tb, ok := v.(*lua.LTable)
		return ok && tb.Len() == 0 && tb.Metatable == lua.LNil
	})
	check("array", []byte{0x92, 0x01, 0xa1, 'x'}, func(v lua.LValue) bool {
		tb, ok := v.(*lua.LTable)
		return ok && tb.Len() == 2 && tb.RawGetInt(1) == lua.LNumber(1) && tb.RawGetInt(2) == lua.LString("x")
	})
	check("map with a bin key", cat([]byte{0x81}, bin8("k"), []byte{0x91, 0x02}), func(v lua.LValue) bool {
		tb, ok := v.(*lua.LTable)
		if !ok {
			return false
		}
		inner, ok := tb.RawGetString("k").(*lua.LTable)
		return ok && inner.RawGetInt(1) == lua.LNumber(2)
	})
	check("nesting at the limit", nestWire(protocol.MaxDepth, []byte{0x01}), func(v lua.LValue) bool {
		for i := 0; i < protocol.MaxDepth; i++ {
			tb, ok := v.(*lua.LTable)
			if !ok {
				return false
			}
			v = tb.RawGetInt(1)
		}
		return v == lua.LNumber(1)
	})

	for _, tc := range malformedValues() {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Unmarshal(L, tc.wire)
			wantCode(t, err, protocol.CodeProtocol)
			if v != lua.LNil {
				t.Errorf("got %s alongside the error", v.Type())
			}
		})
	}
}

func TestLuaCodecUnmarshalList(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	goc := queueCodec()
	wire, err := goc.Marshal(protocol.Tuple{1, "a", nil, protocol.Tuple{true}, &fakeQueue{id: 5}}, protocol.Strict)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := c.UnmarshalList(L, wire)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 5 {
		t.Fatalf("got %d values, want 5", len(vs))
	}
	if vs[0] != lua.LNumber(1) || vs[1] != lua.LString("a") || vs[2] != lua.LNil {
		t.Errorf("scalars: %v %v %v", vs[0], vs[1], vs[2])
	}
	if tb, ok := vs[3].(*lua.LTable); !ok || tb.RawGetInt(1) != lua.LTrue {
		t.Errorf("tuple: %v", vs[3])
	}
	if ud, ok := vs[4].(*lua.LUserData); !ok || ud.Value.(*luaQueue).id != 5 {
		t.Errorf("queue: %v", vs[4])
	}

	// A nil in the middle of a list survives MarshalList: the list is not
	// a table.
	back, err := c.MarshalList(vs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := goc.Unmarshal(back)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{int64(1), "a", nil, []any{true}, protocol.QueueRef{ID: 5}}
	if !valuesEqual(got, want) {
		t.Errorf("MarshalList round trip = %s, want %s", show(got), show(want))
	}

	if vs, err := c.UnmarshalList(L, []byte{0x90}); err != nil || len(vs) != 0 {
		t.Errorf("empty list: %v, %v", vs, err)
	}
	if b, err := c.MarshalList(nil); err != nil || !bytes.Equal(b, []byte{0x90}) {
		t.Errorf("MarshalList(nil) = %x, %v", b, err)
	}

	for _, tc := range []malformedCase{
		{"not a list", []byte{0x01}},
		{"a map", []byte{0x80}},
		{"trailing bytes", []byte{0x91, 0x01, 0x01}},
		{"truncated", []byte{0x93, 0x01}},
		{"bad element", []byte{0x91, 0xc1}},
		{"big integer element", cat([]byte{0x91, 0xcf}, be64(math.MaxUint64))},
		{"element nested too deep", cat([]byte{0x91}, nestWire(protocol.MaxDepth, []byte{0x01}))},
		{"empty input", nil},
	} {
		_, err := c.UnmarshalList(L, tc.wire)
		if err == nil {
			t.Errorf("%s: UnmarshalList(%x) succeeded", tc.name, tc.wire)
			continue
		}
		wantCode(t, err, protocol.CodeProtocol)
	}
}

// A Go value sent to Lua and sent back arrives in the normalised form the
// Go codec itself produces, except that Lua cannot tell an empty map from an
// empty list.
func TestGoLuaGoRoundTrip(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	goc := queueCodec()
	for _, tc := range []struct {
		name string
		v    any
		want any // nil: the Go codec's own normalised form
	}{
		{name: "scalars", v: protocol.Tuple{true, 1, -1, maxSafe, -maxSafe, 0.5, 1e300, "s", []byte("b")}},
		{name: "all int kinds", v: []any{int8(-1), int16(2), int32(-3), int64(4), uint8(5), uint16(6), uint32(7), uint64(8), uint(9), MyInt(10)}},
		{name: "integral floats", v: []any{1.0, float32(2), -0.5}},
		{name: "negative zero", v: math.Copysign(0, -1)},
		{name: "NaN and infinities", v: []any{math.NaN(), math.Inf(1), math.Inf(-1)}},
		{name: "nested", v: map[string]any{"a": []any{1, map[string]any{"b": "c"}}, "d": []int{4, 5}}},
		{name: "queue", v: []any{&fakeQueue{id: 12}, map[string]any{"q": &fakeQueue{id: 13}}}},
		{name: "empty list", v: []any{}},
		{name: "empty tuple", v: protocol.Tuple{}},
		{name: "empty map becomes an empty list", v: map[string]any{"m": map[string]any{}}, want: map[string]any{"m": []any{}}},
		{name: "nesting at the limit", v: nestList(protocol.MaxDepth, "leaf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := goc.Marshal(tc.v, protocol.Fallback)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == nil {
				if want, err = goc.Unmarshal(b); err != nil {
					t.Fatal(err)
				}
			}
			lv, err := c.Unmarshal(L, b)
			if err != nil {
				t.Fatalf("into Lua: %v", err)
			}
			back, err := c.Marshal(lv)
			if err != nil {
				t.Fatalf("out of Lua: %v", err)
			}
			got, err := goc.Unmarshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if !valuesEqual(got, want) {
				t.Errorf("got %s, want %s", show(got), show(want))
			}
		})
	}
}

// TestLuaCodecValueTooLarge: a table holding the same table twice, forty
// levels deep, is not shareable, and encoding it stops at MaxValueSize
// instead of expanding 2^40 leaves.
func TestLuaCodecValueTooLarge(t *testing.T) {
	L := newLuaState(t)
	c := newLuaCodec(L)
	if err := L.DoString(`t = string.rep("leaf", 2^18) for i = 1, 40 do t = {t, t} end`); err != nil {
		t.Fatal(err)
	}
	_, err := c.Marshal(L.GetGlobal("t"))
	wantCode(t, err, protocol.CodeNotShareable)
	_, err = c.MarshalList([]lua.LValue{L.GetGlobal("t")})
	wantCode(t, err, protocol.CodeNotShareable)
}
