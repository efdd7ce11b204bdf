package protocol

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Kind is the first element of every message array.
type Kind uint8

// The three message kinds, in MessagePack-RPC's shapes:
//
//	[0, id, method, params]   request
//	[1, id, error, result]    response (error is nil or an *Error map)
//	[2, method, params]       notification
const (
	KindRequest      Kind = 0
	KindResponse     Kind = 1
	KindNotification Kind = 2
)

// Message is one decoded frame. Body holds the raw msgpack of the params or
// the result; it is a single complete msgpack value (nil encodes as 0xc0).
type Message struct {
	Kind   Kind
	ID     uint32
	Method string
	Error  *Error
	Body   []byte
}

var encPool = sync.Pool{New: func() any {
	buf := new(bytes.Buffer)
	enc := msgpack.NewEncoder(buf)
	return &frameEncoder{buf: buf, enc: enc}
}}

type frameEncoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

func getEncoder() *frameEncoder {
	fe := encPool.Get().(*frameEncoder)
	fe.reset()
	return fe
}

// reset empties fe for another frame.
func (fe *frameEncoder) reset() {
	fe.buf.Reset()
	fe.buf.Write([]byte{0, 0, 0, 0}) // length prefix, filled in by finish
}

func putEncoder(fe *frameEncoder) {
	if fe.buf.Cap() <= 1<<20 {
		encPool.Put(fe)
	}
}

// finish fills in the length prefix and returns the whole frame.
func (fe *frameEncoder) finish() ([]byte, error) {
	b := fe.buf.Bytes()
	n := len(b) - frameHeader
	if n > MaxFrameSize {
		return nil, ErrFrameTooLarge
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	return b, nil
}

// encodeBody writes v: nil as msgpack nil, a RawMessage verbatim, anything
// else through msgpack (a CustomEncoder such as Values encodes itself).
func encodeBody(enc *msgpack.Encoder, v any) error {
	switch b := v.(type) {
	case nil:
		return enc.EncodeNil()
	case msgpack.RawMessage:
		if len(b) == 0 {
			return enc.EncodeNil()
		}
		return enc.Encode(b)
	default:
		return enc.Encode(v)
	}
}

func (fe *frameEncoder) request(id uint32, method string, params any) error {
	e := fe.enc
	if err := e.EncodeArrayLen(4); err != nil {
		return err
	}
	_ = e.EncodeUint8(uint8(KindRequest))
	_ = e.EncodeUint32(id)
	_ = e.EncodeString(method)
	return encodeBody(e, params)
}

func (fe *frameEncoder) response(id uint32, rerr *Error, result any) error {
	e := fe.enc
	if err := e.EncodeArrayLen(4); err != nil {
		return err
	}
	_ = e.EncodeUint8(uint8(KindResponse))
	_ = e.EncodeUint32(id)
	if rerr != nil {
		if err := e.Encode(rerr); err != nil {
			return err
		}
		return e.EncodeNil()
	}
	_ = e.EncodeNil()
	return encodeBody(e, result)
}

func (fe *frameEncoder) notification(method string, params any) error {
	e := fe.enc
	if err := e.EncodeArrayLen(3); err != nil {
		return err
	}
	_ = e.EncodeUint8(uint8(KindNotification))
	_ = e.EncodeString(method)
	return encodeBody(e, params)
}

// AppendMessage appends m, framed, to dst. Body must be a complete msgpack
// value or empty (nil).
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	fe := getEncoder()
	defer putEncoder(fe)
	var err error
	body := msgpack.RawMessage(m.Body)
	switch m.Kind {
	case KindRequest:
		err = fe.request(m.ID, m.Method, body)
	case KindResponse:
		err = fe.response(m.ID, m.Error, body)
	case KindNotification:
		err = fe.notification(m.Method, body)
	default:
		err = fmt.Errorf("protocol: unknown message kind %d", m.Kind)
	}
	if err != nil {
		return dst, err
	}
	frame, err := fe.finish()
	if err != nil {
		return dst, err
	}
	return append(dst, frame...), nil
}

// DecodeMessage decodes one frame body. It never panics on malformed
// input: whatever is not exactly one well-formed message is a
// CodeProtocol *Error. Body aliases frame.
func DecodeMessage(frame []byte) (*Message, error) {
	if err := wellFormed(frame); err != nil {
		return nil, err
	}
	r := bytes.NewReader(frame)
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(r)

	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, malformed("message header: %v", err)
	}
	kind, err := decodeUint(dec, 0xff)
	if err != nil {
		return nil, malformed("message kind: %v", err)
	}
	m := &Message{Kind: Kind(kind)}
	switch m.Kind {
	case KindRequest, KindResponse:
		if n != 4 {
			return nil, malformed("kind %d wants 4 elements, got %d", kind, n)
		}
		id, err := decodeUint(dec, 0xffffffff)
		if err != nil {
			return nil, malformed("message id: %v", err)
		}
		m.ID = uint32(id)
		if m.Kind == KindRequest {
			if m.Method, err = decodeStr(dec); err != nil {
				return nil, malformed("method: %v", err)
			}
		} else if m.Error, err = decodeError(dec); err != nil {
			return nil, err
		}
	case KindNotification:
		if n != 3 {
			return nil, malformed("notification wants 3 elements, got %d", n)
		}
		if m.Method, err = decodeStr(dec); err != nil {
			return nil, malformed("method: %v", err)
		}
	default:
		return nil, malformed("unknown message kind %d", kind)
	}
	start := len(frame) - r.Len()
	if err := dec.Skip(); err != nil {
		return nil, malformed("body: %v", err)
	}
	if r.Len() != 0 {
		return nil, malformed("%d trailing bytes", r.Len())
	}
	m.Body = frame[start:]
	return m, nil
}

// decodeUint reads an unsigned integer of at most limit, refusing nil,
// negative numbers and floats: a header field of the wrong type is a
// malformed message, not a zero.
func decodeUint(dec *msgpack.Decoder, limit uint64) (uint64, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if !(msgpcode.IsFixedNum(c) && c <= 0x7f) && !(c >= msgpcode.Uint8 && c <= msgpcode.Uint64) {
		return 0, fmt.Errorf("want an unsigned integer, got code %#x", c)
	}
	n, err := dec.DecodeUint64()
	if err != nil {
		return 0, err
	}
	if n > limit {
		return 0, fmt.Errorf("%d out of range", n)
	}
	return n, nil
}

// decodeStr reads a msgpack str, refusing nil and bin.
func decodeStr(dec *msgpack.Decoder) (string, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("want a string, got code %#x", c)
	}
	return dec.DecodeString()
}

func decodeError(dec *msgpack.Decoder) (*Error, error) {
	code, err := dec.PeekCode()
	if err != nil {
		return nil, malformed("error: %v", err)
	}
	if code == 0xc0 {
		_ = dec.DecodeNil()
		return nil, nil
	}
	e := new(Error)
	if err := dec.Decode(e); err != nil {
		return nil, malformed("error: %v", err)
	}
	if e.Code == "" {
		e.Code = CodeProtocol
	}
	return e, nil
}

func malformed(format string, args ...any) *Error {
	return &Error{Code: CodeProtocol, Msg: "protocol: malformed message: " + fmt.Sprintf(format, args...)}
}
