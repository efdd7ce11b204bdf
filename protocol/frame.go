package protocol

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// MaxFrameSize bounds one frame's body. A length beyond it means a garbled
// stream or a hostile peer; the session ends instead of allocating it.
const MaxFrameSize = 64 << 20

// frameHeader is the size of the big-endian uint32 length prefix.
const frameHeader = 4

// ErrFrameTooLarge is returned for a frame whose declared length exceeds
// MaxFrameSize.
var ErrFrameTooLarge = fmt.Errorf("protocol: frame larger than %d bytes", MaxFrameSize)

// ReadFrame reads one length-prefixed frame from r. It reuses buf when it is
// large enough and returns the body.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrameSize {
		return nil, ErrFrameTooLarge
	}
	if cap(buf) < int(n) && n > growFrom {
		// A large declared length costs memory only as its bytes arrive:
		// four bytes from a hostile peer must not allocate 64 MiB.
		var b bytes.Buffer
		b.Grow(growFrom)
		if _, err := io.CopyN(&b, r, int64(n)); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return b.Bytes(), nil
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// growFrom is the frame size above which ReadFrame grows its buffer as
// data arrives instead of allocating the declared length up front.
const growFrom = 1 << 20

// WriteFrame writes body as one frame with a single Write call.
func WriteFrame(w io.Writer, body []byte) error {
	if len(body) > MaxFrameSize {
		return ErrFrameTooLarge
	}
	buf := make([]byte, frameHeader+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[frameHeader:], body)
	_, err := w.Write(buf)
	return err
}
