package protocol

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"syscall"
)

// CallConn is one end of a call channel: frames of the session's message
// format, read and written by whoever is making or serving the call in
// progress. Writes are serialised so a flush of output and the response
// never interleave.
type CallConn struct {
	rw  io.ReadWriteCloser
	r   *bufio.Reader
	wmu sync.Mutex
}

// NewCallConn wraps a connection as a call channel.
func NewCallConn(rw io.ReadWriteCloser) *CallConn {
	return &CallConn{rw: rw, r: bufio.NewReaderSize(rw, readBufferSize)}
}

// Read reads the next message.
func (c *CallConn) Read() (*Message, error) {
	frame, err := ReadFrame(c.r, nil)
	if err != nil {
		return nil, err
	}
	return DecodeMessage(frame)
}

// Request writes a request. A request that could not be sent without
// touching the connection (its params cannot be encoded, or it is larger
// than a frame) fails with an *Error, and the channel stays usable; any
// other error is the connection's.
func (c *CallConn) Request(id uint32, method string, params any) error {
	fe := getEncoder()
	defer putEncoder(fe)
	if err := fe.request(id, method, params); err != nil {
		return AsError(err)
	}
	frame, err := fe.finish()
	if err != nil {
		return Errorf(CodeInvalidArgument, "the request is more than the %d bytes a message can hold", MaxFrameSize)
	}
	return c.writeFrame(frame)
}

// Respond writes a response: rerr, or the result. A response that cannot
// be encoded, or is too large for a frame, is answered with an error
// saying so, so the request is never left without an answer.
func (c *CallConn) Respond(id uint32, rerr *Error, result any) (err error) {
	result, after := Unwrap(result)
	defer func() { after(err == nil && rerr == nil) }()
	fe := getEncoder()
	defer putEncoder(fe)
	err = fe.response(id, rerr, result)
	if err == nil {
		var frame []byte
		if frame, err = fe.finish(); err == nil {
			return c.writeFrame(frame)
		}
	}
	switch {
	case !errors.Is(err, ErrFrameTooLarge):
		rerr = AsError(err)
	case rerr != nil:
		rerr = rerr.Clipped(maxErrorText)
	default:
		rerr = Errorf(CodeNotShareable, "the answer is more than the %d bytes a message can hold", MaxFrameSize)
	}
	fe.reset()
	if err := fe.response(id, rerr, nil); err != nil {
		return err
	}
	return c.write(fe)
}

// maxErrorText bounds each text of an error answered in place of one too
// large to send.
const maxErrorText = 64 << 10

// Notify writes a notification.
func (c *CallConn) Notify(method string, params any) error {
	fe := getEncoder()
	defer putEncoder(fe)
	if err := fe.notification(method, params); err != nil {
		return err
	}
	return c.write(fe)
}

func (c *CallConn) write(fe *frameEncoder) error {
	frame, err := fe.finish()
	if err != nil {
		return err
	}
	return c.writeFrame(frame)
}

func (c *CallConn) writeFrame(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rw.Write(frame)
	return err
}

// underneath is the connection under rw's TLS, if any: the socket to
// shut down. A connection over another says which with Underneath (see
// internal/socket), so that this package, which every worker links, need
// not link the net package and its initialisation.
func underneath(rw io.ReadWriteCloser) io.ReadWriteCloser {
	for {
		u, ok := rw.(interface{ Underneath() io.ReadWriteCloser })
		if !ok {
			return rw
		}
		rw = u.Underneath()
	}
}

// CloseRead ends the channel's reading once what has arrived is read: the
// reader gets every message sent before, then EOF. Writing goes on, so
// what it reads can still be answered. Without a way to close only the
// reading side, it closes the channel.
func (c *CallConn) CloseRead() error {
	switch rw := underneath(c.rw).(type) {
	case interface{ CloseRead() error }:
		return rw.CloseRead()
	case syscall.Conn:
		rc, err := rw.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_RD) }); err != nil {
			return err
		}
		return serr
	}
	return c.Close()
}

// Close closes the channel. Closing a blocking socket's descriptor does not
// end a read in progress on it, so a socket is shut down first: the reader
// returns at once.
func (c *CallConn) Close() error {
	if sc, ok := underneath(c.rw).(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
		}
	}
	return c.rw.Close()
}
