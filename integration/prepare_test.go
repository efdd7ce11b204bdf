package integration

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

func TestPrepareMainBinds(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	if err := it.PrepareMain(map[string]any{"spam": 42, "eggs": "ham"}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	mustExec(t, it, "print(spam, eggs)")
	wantEqual(t, "output", out.String(), "42\tham\n")
	wantEqual(t, "read back", mustCall(t, it, "function() return spam, eggs end"), interpreters.Tuple{int64(42), "ham"})
}

// TestPrepareMainValues: every strict-tier kind binds, and reads back in
// its normalised form.
func TestPrepareMainValues(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	ns := map[string]any{
		"v_true":   true,
		"v_false":  false,
		"v_int":    -7,
		"v_uint8":  uint8(200),
		"v_max":    int64(1<<53 - 1),
		"v_min":    int64(-(1<<53 - 1)),
		"v_float":  2.5,
		"v_f32":    float32(0.5),
		"v_whole":  3.0,
		"v_inf":    math.Inf(-1),
		"v_str":    "text",
		"v_bin":    "\x00\xff",
		"v_bytes":  []byte("raw"),
		"v_mine":   myBytes("named"),
		"v_myint":  myInt(11),
		"v_tuple":  interpreters.Tuple{1, "two", interpreters.Tuple{true}},
		"v_empty":  interpreters.Tuple{},
		"_under_1": "underscore",
	}
	if err := it.PrepareMain(ns); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	want := map[string]any{
		"v_true":   true,
		"v_false":  false,
		"v_int":    int64(-7),
		"v_uint8":  int64(200),
		"v_max":    int64(1<<53 - 1),
		"v_min":    int64(-(1<<53 - 1)),
		"v_float":  2.5,
		"v_f32":    0.5,
		"v_whole":  int64(3),
		"v_inf":    math.Inf(-1),
		"v_str":    "text",
		"v_bin":    "\x00\xff",
		"v_bytes":  "raw",
		"v_mine":   "named",
		"v_myint":  int64(11),
		"v_tuple":  []any{int64(1), "two", []any{true}},
		"v_empty":  []any{},
		"_under_1": "underscore",
	}
	for name, w := range want {
		wantEqual(t, name, global(t, it, name), w)
	}
	// Lua sees the types it should.
	mustExec(t, it, `
		assert(type(v_bytes) == "string")
		assert(type(v_tuple) == "table" and #v_tuple == 3 and v_tuple[3][1] == true)
		assert(v_max + 0 == 9007199254740991)
	`)
}

// TestPrepareMainOverwrites: existing globals are replaced, nil removes.
func TestPrepareMainOverwrites(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "spam = 1 eggs = 'x'")
	if err := it.PrepareMain(map[string]any{"spam": 2, "eggs": nil}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	wantEqual(t, "spam", global(t, it, "spam"), int64(2))
	wantEqual(t, "eggs", global(t, it, "eggs"), nil)
	if err := it.PrepareMain(map[string]any{"spam": "third"}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	wantEqual(t, "spam", global(t, it, "spam"), "third")
}

// TestPrepareMainNotShareable: only the strict tier binds, all or nothing.
func TestPrepareMainNotShareable(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	mustExec(t, it, "foo = 'before'")
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"[]any", []any{1}},
		{"empty []any", []any{}},
		{"map[string]any", map[string]any{"spam": "eggs"}},
		{"[]int", []int{1}},
		{"[]string", []string{"a"}},
		{"struct", struct{ A int }{1}},
		{"func", func() {}},
		{"chan", make(chan int)},
		{"int 2^53", int64(1 << 53)},
		{"uint64 max", uint64(math.MaxUint64)},
		{"Tuple holding a map", interpreters.Tuple{1, map[string]any{}}},
		{"Tuple holding a slice", interpreters.Tuple{interpreters.Tuple{[]any{}}}},
	} {
		err := it.PrepareMain(map[string]any{"foo": "after", "spam": tc.v, "zzz": 1, "aaa": 1})
		wantNotShareable(t, "PrepareMain with "+tc.name, err)
	}
	wantEqual(t, "foo", global(t, it, "foo"), "before")
	wantEqual(t, "spam", global(t, it, "spam"), nil)
	wantEqual(t, "aaa", global(t, it, "aaa"), nil)
	wantEqual(t, "zzz", global(t, it, "zzz"), nil)
}

// TestPrepareMainInvalid: an empty map, or a key that is not a Lua name,
// is ErrInvalidArgument; nothing is bound.
func TestPrepareMainInvalid(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	wantInvalid(t, "PrepareMain(empty map)", it.PrepareMain(map[string]any{}))
	wantInvalid(t, "PrepareMain(nil)", it.PrepareMain(nil))
	bad := []string{
		"", "1abc", "9", "a-b", "a b", " a", "a ", "a.b", "a\x00", "é", "spam!", "a\nb",
		"and", "break", "do", "else", "elseif", "end", "false", "for", "function",
		"if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
		"until", "while",
	}
	for _, k := range bad {
		err := it.PrepareMain(map[string]any{"good": 1, k: 2})
		wantInvalid(t, fmt.Sprintf("PrepareMain key %q", k), err)
	}
	wantEqual(t, "good", global(t, it, "good"), nil)
	// Names that are valid.
	for _, k := range []string{"_", "_G2", "A", "a1", "Local", "END", "and_", "_ENV_", strings.Repeat("n", 200)} {
		if err := it.PrepareMain(map[string]any{k: k}); err != nil {
			t.Errorf("PrepareMain key %q: %v", k, err)
			continue
		}
		wantEqual(t, k, mustCall(t, it, "function(k) return _G[k] end", k), k)
	}
}

// TestIsShareable: the strict tier, exactly.
func TestIsShareable(t *testing.T) {
	t.Parallel()
	type cheese struct{ name string }
	x := 1
	const maxSafe = 1<<53 - 1
	yes := []any{
		nil, true, false,
		0, 10, -10, int8(-128), int16(300), int32(-70000), int64(maxSafe), int64(-maxSafe),
		uint(1), uint8(255), uint16(65535), uint32(1 << 31), uint64(maxSafe), uintptr(8),
		100.0, 0.5, float32(1.25), math.Inf(1), math.NaN(), 1e300,
		"spam", "", []byte("spam"), []byte{}, []byte(nil),
		myBytes("mine"), myInt(1), myString("s"), myFloat(1.5), myBool(false),
		interpreters.Tuple{}, interpreters.Tuple{1, interpreters.Tuple{"spam", "eggs"}, true},
		interpreters.Tuple{nil, []byte("b"), 2.5},
	}
	for _, v := range yes {
		if !interpreters.IsShareable(v) {
			t.Errorf("IsShareable(%#v) = false, want true", v)
		}
	}
	no := []any{
		int64(1 << 53), int64(-(1 << 53)), uint64(1 << 53), uint64(math.MaxUint64), math.MaxInt64,
		[]any{}, []any{1}, []int{1}, []string{"a"}, names{"n"},
		map[string]any{}, map[string]any{"a": 1}, map[int]any{1: 1}, counts{"c": 1},
		struct{}{}, cheese{"Wensleydale"}, &cheese{"Brie"}, &x,
		func() {}, make(chan int), complex(1, 1),
		interpreters.Tuple{map[string]any{"a": 1}}, interpreters.Tuple{[]any{}},
		interpreters.Tuple{1, interpreters.Tuple{func() {}}}, interpreters.Tuple{int64(1 << 53)},
		interpreters.GetMain(),
	}
	for _, v := range no {
		if interpreters.IsShareable(v) {
			t.Errorf("IsShareable(%#v) = true, want false", v)
		}
	}
}

// TestIsShareableQueue: a queue handle is in the strict tier.
func TestIsShareableQueue(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	if !rt.IsShareable(q) || !rt.IsShareable(interpreters.Tuple{q, 1}) {
		t.Error("a *Queue should be shareable, alone and in a Tuple")
	}
	it := create(t, rt)
	if err := it.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Errorf("PrepareMain with a *Queue: %v", err)
	}
}
