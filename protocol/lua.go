package protocol

import (
	"bytes"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	lua "github.com/yuin/gopher-lua"
)

// LuaCodec converts Lua values to and from the wire. Lua values always go
// out at the fallback tier; IsShareable answers for the strict one.
type LuaCodec struct {
	// QueueID reports whether ud is a queue handle and its id.
	QueueID func(ud *lua.LUserData) (int64, bool)
	// Queue returns the Lua handle for a queue id met while decoding. When
	// nil, a queue on the wire is an error.
	Queue func(id int64) lua.LValue
}

// Marshal encodes one Lua value.
func (c *LuaCodec) Marshal(v lua.LValue) ([]byte, error) {
	var buf valueBuffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	return sized(&buf, c.Encode(enc, v))
}

// MarshalList encodes vs as one msgpack array.
func (c *LuaCodec) MarshalList(vs []lua.LValue) ([]byte, error) {
	var buf valueBuffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	err := enc.EncodeArrayLen(len(vs))
	for _, v := range vs {
		if err != nil {
			break
		}
		err = c.Encode(enc, v)
	}
	return sized(&buf, err)
}

// Encode writes v: a table whose keys are exactly 1..n as an array, one
// with only string keys as a map, an empty table as an empty array.
// Functions, coroutines, other userdata, tables with metatables, cyclic
// tables and other key shapes are CodeNotShareable.
func (c *LuaCodec) Encode(enc *msgpack.Encoder, v lua.LValue) error {
	return c.encode(enc, v, nil, 0)
}

func (c *LuaCodec) encode(enc *msgpack.Encoder, v lua.LValue, path []*lua.LTable, depth int) error {
	if depth > MaxDepth {
		return notShareable("table nested deeper than %d", MaxDepth)
	}
	switch x := v.(type) {
	case *lua.LNilType:
		return enc.EncodeNil()
	case lua.LBool:
		return enc.EncodeBool(bool(x))
	case lua.LNumber:
		return encodeLuaNumber(enc, float64(x))
	case lua.LString:
		return enc.EncodeString(string(x))
	case *lua.LUserData:
		if c.QueueID != nil {
			if id, ok := c.QueueID(x); ok {
				return encodeQueue(enc, id)
			}
		}
		return notShareable("not shareable: userdata")
	case *lua.LTable:
		return c.encodeTable(enc, x, path, depth)
	}
	return notShareable("not shareable: %s", v.Type())
}

func encodeLuaNumber(enc *msgpack.Encoder, f float64) error {
	if i, ok := NormalizeNumber(f).(int64); ok {
		return enc.EncodeInt(i)
	}
	return enc.EncodeFloat64(f)
}

func (c *LuaCodec) encodeTable(enc *msgpack.Encoder, t *lua.LTable, path []*lua.LTable, depth int) error {
	if t.Metatable != lua.LNil {
		return notShareable("not shareable: a table with a metatable")
	}
	for _, p := range path {
		if p == t {
			return notShareable("not shareable: the table contains a reference cycle")
		}
	}
	path = append(path, t)

	// Classify the keys: exactly 1..n makes an array, only strings a map.
	count, strs, maxInt := 0, 0, 0
	other := false
	for k, _ := t.Next(lua.LNil); k != lua.LNil; k, _ = t.Next(k) {
		count++
		switch kk := k.(type) {
		case lua.LString:
			strs++
		case lua.LNumber:
			f := float64(kk)
			if f >= 1 && f == math.Trunc(f) && f <= MaxSafeInt {
				maxInt = max(maxInt, int(f))
			} else {
				other = true
			}
		default:
			other = true
		}
	}
	switch {
	case count == 0:
		return enc.EncodeArrayLen(0)
	case !other && strs == 0 && maxInt == count:
		if err := enc.EncodeArrayLen(count); err != nil {
			return err
		}
		for i := 1; i <= count; i++ {
			if err := c.encode(enc, t.RawGetInt(i), path, depth+1); err != nil {
				return err
			}
		}
		return nil
	case strs == count:
		if err := enc.EncodeMapLen(count); err != nil {
			return err
		}
		for k, v := t.Next(lua.LNil); k != lua.LNil; k, v = t.Next(k) {
			if err := enc.EncodeString(string(k.(lua.LString))); err != nil {
				return err
			}
			if err := c.encode(enc, v, path, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return notShareable("not shareable: a table whose keys are neither exactly 1..n nor all strings")
}

// IsShareable reports whether v is in the strict tier: nil, a boolean, a
// number, a string or a queue handle.
func (c *LuaCodec) IsShareable(v lua.LValue) bool {
	switch x := v.(type) {
	case *lua.LNilType, lua.LBool, lua.LNumber, lua.LString:
		return true
	case *lua.LUserData:
		if c.QueueID != nil {
			_, ok := c.QueueID(x)
			return ok
		}
	}
	return false
}

// Unmarshal decodes one value from b.
func (c *LuaCodec) Unmarshal(L *lua.LState, b []byte) (lua.LValue, error) {
	if err := wellFormed(b); err != nil {
		return lua.LNil, err
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	r := bytes.NewReader(b)
	dec.Reset(r)
	v, err := c.decode(L, dec, 0)
	if err != nil {
		return lua.LNil, err
	}
	if r.Len() != 0 {
		return lua.LNil, malformed("%d trailing bytes after value", r.Len())
	}
	return v, nil
}

// UnmarshalList decodes a msgpack array from b into Lua values.
func (c *LuaCodec) UnmarshalList(L *lua.LState, b []byte) ([]lua.LValue, error) {
	if err := wellFormed(b); err != nil {
		return nil, err
	}
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	r := bytes.NewReader(b)
	dec.Reset(r)
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, malformed("list: %v", err)
	}
	vs := make([]lua.LValue, 0, min(max(n, 0), 1024))
	for i := 0; i < n; i++ {
		v, err := c.decode(L, dec, 1)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	if r.Len() != 0 {
		return nil, malformed("%d trailing bytes after list", r.Len())
	}
	return vs, nil
}

func (c *LuaCodec) decode(L *lua.LState, dec *msgpack.Decoder, depth int) (lua.LValue, error) {
	if depth > MaxDepth {
		return lua.LNil, malformed("value nested deeper than %d", MaxDepth)
	}
	code, err := dec.PeekCode()
	if err != nil {
		return lua.LNil, malformed("value: %v", err)
	}
	switch {
	case msgpcode.IsFixedArray(code) || code == msgpcode.Array16 || code == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return lua.LNil, malformed("array: %v", err)
		}
		t := L.CreateTable(min(n, 1024), 0)
		for i := 1; i <= n; i++ {
			v, err := c.decode(L, dec, depth+1)
			if err != nil {
				return lua.LNil, err
			}
			t.RawSetInt(i, v)
		}
		return t, nil
	case msgpcode.IsFixedMap(code) || code == msgpcode.Map16 || code == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return lua.LNil, malformed("map: %v", err)
		}
		t := L.CreateTable(0, min(n, 1024))
		for i := 0; i < n; i++ {
			kc, err := dec.PeekCode()
			if err != nil {
				return lua.LNil, malformed("map key: %v", err)
			}
			if !msgpcode.IsString(kc) && !msgpcode.IsBin(kc) {
				return lua.LNil, malformed("map key of code %#x is not a string", kc)
			}
			kb, err := dec.DecodeBytes()
			if err != nil {
				return lua.LNil, malformed("map key: %v", err)
			}
			v, err := c.decode(L, dec, depth+1)
			if err != nil {
				return lua.LNil, err
			}
			t.RawSetString(string(kb), v)
		}
		return t, nil
	case msgpcode.IsExt(code):
		id, err := decodeQueueExt(dec)
		if err != nil {
			return lua.LNil, err
		}
		if c.Queue == nil {
			return lua.LNil, malformed("queue handle where none is expected")
		}
		return c.Queue(id), nil
	}
	var plain Codec
	v, err := plain.decode(dec, depth)
	if err != nil {
		return lua.LNil, err
	}
	switch x := v.(type) {
	case nil:
		return lua.LNil, nil
	case bool:
		return lua.LBool(x), nil
	case int64:
		return lua.LNumber(x), nil
	case float64:
		return lua.LNumber(x), nil
	case string:
		return lua.LString(x), nil
	}
	return lua.LNil, malformed("unexpected value %T", v)
}
