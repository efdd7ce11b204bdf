package protocol

import "encoding/binary"

// maxWireDepth bounds nesting on the wire: a value's MaxDepth plus the
// message and list wrappers around it.
const maxWireDepth = MaxDepth + 4

// wellFormed checks that b is exactly one well-formed msgpack value, using
// no memory: every declared length and count must fit in what is left of
// b. Decoding only checked input means a hostile length can never make the
// decoder allocate more than the input's size.
func wellFormed(b []byte) error {
	end, err := skipValue(b, 0, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return malformed("%d trailing bytes", len(b)-end)
	}
	return nil
}

func need(b []byte, i, n int) error {
	if n < 0 || n > len(b)-i {
		return malformed("truncated: %d bytes declared at offset %d, %d left", n, i, len(b)-i)
	}
	return nil
}

// uintAt reads a big-endian length of size bytes at b[i:].
func uintAt(b []byte, i, size int) (int, error) {
	if err := need(b, i, size); err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return int(b[i]), nil
	case 2:
		return int(binary.BigEndian.Uint16(b[i:])), nil
	}
	return int(binary.BigEndian.Uint32(b[i:])), nil
}

// skipValue returns the offset just past the value at b[i:].
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxWireDepth {
		return 0, malformed("nested deeper than %d", maxWireDepth)
	}
	if err := need(b, i, 1); err != nil {
		return 0, err
	}
	c := b[i]
	i++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return i, nil
	case c >= 0x80 && c <= 0x8f:
		return skipItems(b, i, 2*int(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return skipItems(b, i, int(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		n := int(c & 0x1f)
		return i + n, need(b, i, n)
	}
	switch c {
	case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb: // bin8..32, str8..32
		size := lenSize(c == 0xc4 || c == 0xd9, c == 0xc5 || c == 0xda)
		n, err := uintAt(b, i, size)
		if err != nil {
			return 0, err
		}
		i += size
		return i + n, need(b, i, n)
	case 0xc7, 0xc8, 0xc9: // ext8..32: length, type, data
		size := lenSize(c == 0xc7, c == 0xc8)
		n, err := uintAt(b, i, size)
		if err != nil {
			return 0, err
		}
		i += size
		return i + 1 + n, need(b, i, 1+n)
	case 0xca:
		return i + 4, need(b, i, 4)
	case 0xcb:
		return i + 8, need(b, i, 8)
	case 0xcc, 0xd0:
		return i + 1, need(b, i, 1)
	case 0xcd, 0xd1:
		return i + 2, need(b, i, 2)
	case 0xce, 0xd2:
		return i + 4, need(b, i, 4)
	case 0xcf, 0xd3:
		return i + 8, need(b, i, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 plus the type byte
		n := 1 + 1<<(c-0xd4)
		return i + n, need(b, i, n)
	case 0xdc, 0xdd, 0xde, 0xdf: // array16/32, map16/32
		size := 2
		if c == 0xdd || c == 0xdf {
			size = 4
		}
		n, err := uintAt(b, i, size)
		if err != nil {
			return 0, err
		}
		if c >= 0xde {
			n *= 2
		}
		return skipItems(b, i+size, n, depth)
	}
	return 0, malformed("invalid msgpack code %#x", c)
}

func skipItems(b []byte, i, n, depth int) (int, error) {
	if err := need(b, i, n); err != nil { // every item takes at least a byte
		return 0, err
	}
	var err error
	for k := 0; k < n; k++ {
		if i, err = skipValue(b, i, depth+1); err != nil {
			return 0, err
		}
	}
	return i, nil
}

// lenSize is the width of a length field: 1, 2 or else 4 bytes.
func lenSize(one, two bool) int {
	switch {
	case one:
		return 1
	case two:
		return 2
	}
	return 4
}
