package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/subinterp/subinterp/protocol"
)

func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestFrameRoundTrip(t *testing.T) {
	bodies := [][]byte{
		{},
		{0xc0},
		[]byte("hello"),
		bytes.Repeat([]byte{0xab}, 70000),
	}
	var stream bytes.Buffer
	for _, b := range bodies {
		if err := protocol.WriteFrame(&stream, b); err != nil {
			t.Fatal(err)
		}
	}
	// A reader that returns one byte at a time proves frames are reassembled
	// from short reads, as a socket delivers them.
	r := iotest.OneByteReader(bytes.NewReader(stream.Bytes()))
	for i, want := range bodies {
		got, err := protocol.ReadFrame(r, nil)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := protocol.ReadFrame(r, nil); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameWireFormat(t *testing.T) {
	var w countingWriter
	if err := protocol.WriteFrame(&w, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 3, 1, 2, 3}; !bytes.Equal(w.buf.Bytes(), want) {
		t.Errorf("wrote %x, want %x", w.buf.Bytes(), want)
	}
	// Concurrent writers on one connection rely on a frame being one Write.
	if w.writes != 1 {
		t.Errorf("%d Write calls, want 1", w.writes)
	}
}

type countingWriter struct {
	buf    bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func TestReadFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 64)
	got, err := protocol.ReadFrame(bytes.NewReader(frameOf([]byte("abc"))), buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "abc" || &got[:1][0] != &buf[:1][0] {
		t.Errorf("got %q in a new array, want it in buf", got)
	}
	small := make([]byte, 0, 2)
	got, err = protocol.ReadFrame(bytes.NewReader(frameOf([]byte("abcdef"))), small)
	if err != nil || string(got) != "abcdef" {
		t.Errorf("buffer too small: got %q, %v", got, err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	full := frameOf([]byte("0123456789"))
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing", nil, io.EOF},
		{"one header byte", full[:1], io.ErrUnexpectedEOF},
		{"three header bytes", full[:3], io.ErrUnexpectedEOF},
		{"header only", full[:4], io.ErrUnexpectedEOF},
		{"half the body", full[:9], io.ErrUnexpectedEOF},
		{"all but one byte", full[:len(full)-1], io.ErrUnexpectedEOF},
	} {
		got, err := protocol.ReadFrame(bytes.NewReader(tc.in), nil)
		if err != tc.want {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if got != nil {
			t.Errorf("%s: got %x alongside the error", tc.name, got)
		}
	}
}

func TestReadFrameReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 9, 1}), iotest.ErrReader(boom))
	if _, err := protocol.ReadFrame(r, nil); err != boom {
		t.Errorf("err = %v, want the reader's error", err)
	}
}

func TestReadFrameTooLarge(t *testing.T) {
	for _, n := range []uint32{protocol.MaxFrameSize + 1, 1 << 31, 0xffffffff} {
		hdr := binary.BigEndian.AppendUint32(nil, n)
		r := bytes.NewReader(hdr)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := protocol.ReadFrame(r, nil)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, protocol.ErrFrameTooLarge) {
			t.Fatalf("length %d: err = %v, want ErrFrameTooLarge", n, err)
		}
		if got != nil {
			t.Errorf("length %d: got a body", n)
		}
		// A hostile length must be refused before a buffer of that size
		// is allocated.
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("length %d: allocated %d bytes", n, d)
		}
	}
}

func TestFrameSizeLimitIsInclusive(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates MaxFrameSize")
	}
	// A frame of exactly MaxFrameSize is allowed: the error is about the
	// missing body, not the size.
	hdr := binary.BigEndian.AppendUint32(nil, protocol.MaxFrameSize)
	if _, err := protocol.ReadFrame(bytes.NewReader(hdr), nil); err != io.ErrUnexpectedEOF {
		t.Errorf("header of MaxFrameSize: %v, want io.ErrUnexpectedEOF", err)
	}
	var w countingWriter
	if err := protocol.WriteFrame(&w, make([]byte, protocol.MaxFrameSize+1)); !errors.Is(err, protocol.ErrFrameTooLarge) {
		t.Errorf("WriteFrame of MaxFrameSize+1: %v, want ErrFrameTooLarge", err)
	}
	if w.writes != 0 {
		t.Error("an oversize frame was partly written")
	}
}

func TestWriteFrameError(t *testing.T) {
	boom := errors.New("boom")
	if err := protocol.WriteFrame(errWriter{boom}, []byte{1}); err != boom {
		t.Errorf("err = %v, want the writer's error", err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }
