package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// openJSON is require("json"). Both directions go through the value codec
// (Lua ⇄ msgpack ⇄ the normalised Go form), so JSON maps values exactly as
// calls and queues do: an array for keys 1..n and for an empty table, an
// object for string keys, and a ValueError for anything else. The encoded
// text is bounded as any value is (protocol.MaxValueSize), and by the
// memory limit as string.rep's result is: a text that would pass it is
// refused with a MemoryError before it is built. The tables a decode
// builds count against the memory limit like any others.
func (m *luaModule) openJSON(L *lua.LState) int {
	t := L.CreateTable(0, 2)
	t.RawSetString("encode", L.NewFunction(func(L *lua.LState) int { return m.w.vm.jsonEncode(L) }))
	t.RawSetString("decode", L.NewFunction(jsonDecode))
	L.Push(t)
	return 1
}

// plainCodec converts values that hold no queue: a queue handle is no JSON.
var plainCodec = &protocol.LuaCodec{}

func (vm *VM) jsonEncode(L *lua.LState) int {
	// The conversions below are Go calls that no interrupt can stop: a
	// value whose text must pass the memory limit is refused first.
	if limit := vm.cfg.MemoryLimit; limit > 0 {
		if most := luaJSONSize(L.Get(1), 0, limit); most > limit {
			vm.refuseForMemory(L, "json.encode: the text could be %d bytes, more than the memory limit of %d bytes", most, limit)
		}
	}
	raw, err := plainCodec.Marshal(L.Get(1))
	if err != nil {
		raiseValueError(L, "json.encode: %s", protocol.AsError(err).Msg)
	}
	var goCodec protocol.Codec
	v, err := goCodec.Unmarshal(raw)
	if err != nil {
		raiseValueError(L, "json.encode: %s", protocol.AsError(err).Msg)
	}
	if err := checkJSON(v); err != nil {
		raiseValueError(L, "json.encode: %v", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		raiseValueError(L, "json.encode: %v", err)
	}
	out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	vm.boundJSON(L, int64(len(out)))
	L.Push(lua.LString(out))
	return 1
}

// boundJSON refuses a JSON text of n bytes that would pass the memory
// limit (a MemoryError, as string.rep's) or the largest value
// (a ValueError).
func (vm *VM) boundJSON(L *lua.LState, n int64) {
	if limit := vm.cfg.MemoryLimit; limit > 0 && n > limit {
		vm.refuseForMemory(L, "json.encode: the text would be %d bytes, more than the memory limit of %d bytes", n, limit)
	}
	if n > protocol.MaxValueSize {
		raiseValueError(L, "json.encode: the text would be %d bytes, more than the %d a value may be", n, protocol.MaxValueSize)
	}
}

// checkJSON refuses what JSON cannot say as it is: a string that is not
// UTF-8 (encoding/json would replace its bytes) and a number that is not
// finite.
func checkJSON(v any) error {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return fmt.Errorf("a string that is not valid UTF-8 has no JSON form")
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%v has no JSON form", x)
		}
	case []any:
		for _, e := range x {
			if err := checkJSON(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range x {
			if err := checkJSON(k); err != nil {
				return err
			}
			if err := checkJSON(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func jsonDecode(L *lua.LState) int {
	s := L.CheckString(1)
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		raiseValueError(L, "json.decode: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		raiseValueError(L, "json.decode: trailing data after the value")
	}
	v, err := fromJSON(v, 0)
	if err != nil {
		raiseValueError(L, "json.decode: %v", err)
	}
	var goCodec protocol.Codec
	raw, err := goCodec.Marshal(v, protocol.Fallback)
	if err != nil {
		raiseValueError(L, "json.decode: %s", protocol.AsError(err).Msg)
	}
	lv, err := plainCodec.Unmarshal(L, raw)
	if err != nil {
		raiseValueError(L, "json.decode: %s", protocol.AsError(err).Msg)
	}
	L.Push(lv)
	return 1
}

// fromJSON turns encoding/json's numbers into the codec's: integers within
// ±(2^53−1) as int64, other numbers as float64; an integer Lua could not
// hold exactly is refused rather than rounded.
func fromJSON(v any, depth int) (any, error) {
	if depth > protocol.MaxDepth {
		return nil, fmt.Errorf("value nested deeper than %d", protocol.MaxDepth)
	}
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n > protocol.MaxSafeInt || n < -protocol.MaxSafeInt {
				return nil, fmt.Errorf("integer %s is outside ±(2^53−1), which a Lua number holds exactly", s)
			}
			return n, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %v", s, err)
		}
		return f, nil
	case []any:
		for i, e := range x {
			c, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case map[string]any:
		for k, e := range x {
			c, err := fromJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	}
	return v, nil
}

// raiseValueError raises {type = "ValueError", msg = ...}.
func raiseValueError(L *lua.LState, format string, args ...any) {
	t := L.CreateTable(0, 2)
	t.RawSetString("type", lua.LString("ValueError"))
	t.RawSetString("msg", lua.LString(fmt.Sprintf(format, args...)))
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__tostring", L.NewFunction(errorToString))
	t.Metatable = mt
	L.Error(t, 1)
}

// luaJSONSize is the most bytes v's JSON text can take, counted no
// further than past budget (a table met twice counts twice, as it is
// encoded): each string escaped, with six bytes for each byte that may
// become a \u escape, each number in its longest form. What has no JSON
// form counts as little; the encoding refuses it.
func luaJSONSize(v lua.LValue, depth int, budget int64) int64 {
	switch x := v.(type) {
	case lua.LString:
		return jsonStringSize(string(x))
	case *lua.LTable:
		if depth > protocol.MaxDepth {
			return 2
		}
		n := int64(2)
		x.ForEach(func(k, e lua.LValue) {
			if n > budget {
				return
			}
			if ks, ok := k.(lua.LString); ok {
				n += jsonStringSize(string(ks)) + 1 // and the colon
			}
			n += luaJSONSize(e, depth+1, budget-n) + 1 // and the comma
		})
		return n
	case lua.LNumber:
		return 24 // -1.2345678901234567e-308
	default:
		return 5 // false
	}
}

// jsonStringSize is the most bytes s takes as a JSON string: quoted, a
// quote or backslash escaped in two bytes, a control character or the
// bytes of U+2028 and U+2029 in up to six.
func jsonStringSize(s string) int64 {
	n := int64(len(s)) + 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			n++
		case c < 0x20 || c == 0xE2:
			n += 5
		}
	}
	return n
}
