package socket

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Unpolled is a socket connection that can leave the runtime's poller
// once it is set up, for a connection read under TLS: the TLS handshake
// and the hello run on the connection as it was dialled or accepted, with
// their deadlines, and then Block makes the socket underneath blocking, as
// Blocking makes a Unix socket, so the goroutine reading the TLS
// records sleeps in read(2) and the kernel wakes its thread when one
// arrives, instead of the poller waking a thread to run the goroutine.
//
// Once blocking, its deadlines are ignored: writes are bounded by the send
// timeout Block was given, and reads end with Close or CloseRead, which
// shut the socket down first.
type Unpolled struct {
	net.Conn
	f atomic.Pointer[os.File] // the blocking duplicate, once Block
}

var _ syscall.Conn = (*Unpolled)(nil)

// NewUnpolled wraps c, a TCP or Unix connection, to be made blocking later.
func NewUnpolled(c net.Conn) *Unpolled { return &Unpolled{Conn: c} }

// UnpolledListener wraps each connection l accepts in an Unpolled.
type UnpolledListener struct{ net.Listener }

// Accept accepts a connection of l, as an Unpolled.
func (l UnpolledListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewUnpolled(c), nil
}

// Block makes the socket blocking; a sendTimeout > 0 bounds each write.
// It must not be called while a read or write is in progress. It reports
// false when the socket could not be duplicated: the connection is then
// closed, and fails as a lost one would.
func (u *Unpolled) Block(sendTimeout time.Duration) bool {
	sc, ok := u.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	f, err := blockingDup(sc, u.Conn, sendTimeout, "socket")
	if err != nil {
		return false
	}
	u.f.Store(f)
	return true
}

func (u *Unpolled) Read(p []byte) (int, error) {
	if f := u.f.Load(); f != nil {
		return f.Read(p)
	}
	return u.Conn.Read(p)
}

func (u *Unpolled) Write(p []byte) (int, error) {
	if f := u.f.Load(); f != nil {
		return f.Write(p)
	}
	return u.Conn.Write(p)
}

// Close closes the connection, ending a read in progress.
func (u *Unpolled) Close() error {
	if f := u.f.Load(); f != nil {
		shutdown(f, syscall.SHUT_RDWR)
		return f.Close()
	}
	return u.Conn.Close()
}

// CloseRead ends reading once what has arrived is read; writing goes on.
func (u *Unpolled) CloseRead() error {
	if f := u.f.Load(); f != nil {
		return shutdown(f, syscall.SHUT_RD)
	}
	if cr, ok := u.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return u.Conn.Close()
}

// SyscallConn is the socket's: the blocking duplicate's once Block.
func (u *Unpolled) SyscallConn() (syscall.RawConn, error) {
	if f := u.f.Load(); f != nil {
		return f.SyscallConn()
	}
	if sc, ok := u.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}

// SetDeadline sets the connection's deadlines until Block.
func (u *Unpolled) SetDeadline(t time.Time) error {
	if u.f.Load() != nil {
		return nil
	}
	return u.Conn.SetDeadline(t)
}

// SetReadDeadline sets the connection's read deadline until Block.
func (u *Unpolled) SetReadDeadline(t time.Time) error {
	if u.f.Load() != nil {
		return nil
	}
	return u.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline until Block;
// then Block's send timeout bounds each write.
func (u *Unpolled) SetWriteDeadline(t time.Time) error {
	if u.f.Load() != nil {
		return nil
	}
	return u.Conn.SetWriteDeadline(t)
}

// Blocking returns conn as a call channel reads it best: a Unix socket
// as a file in blocking mode, whose reader sleeps in read(2) and is woken
// by the kernel when a message arrives, instead of the poller waking a
// thread to run it; a TLS connection over an Unpolled with the Unpolled
// made blocking; any other as it is. A sendTimeout > 0 bounds each write
// of a blocking socket (SO_SNDTIMEO), as a deadline would on a
// connection. ok says the socket was made blocking; a Unix socket that
// could not be is closed, and its reads fail as a lost one's would.
func Blocking(conn net.Conn, sendTimeout time.Duration) (rw io.ReadWriteCloser, ok bool) {
	switch c := conn.(type) {
	case *net.UnixConn:
		f, err := blockingDup(c, c, sendTimeout, "unix:"+c.RemoteAddr().String())
		if err != nil {
			return conn, false
		}
		return f, true
	case *tls.Conn:
		if u, isU := c.NetConn().(*Unpolled); isU {
			return tlsConn{c}, u.Block(sendTimeout)
		}
		return tlsConn{c}, false
	}
	return conn, false
}

// tlsConn is a TLS connection that names the socket under it, for a call
// channel to shut down (protocol.CallConn's Close and CloseRead).
type tlsConn struct{ *tls.Conn }

// Underneath is the connection the TLS records travel on.
func (c tlsConn) Underneath() io.ReadWriteCloser { return c.NetConn() }

// blockingDup duplicates sc's descriptor, closes c (the poller forgets
// it), and returns the duplicate in blocking mode, its writes bounded by
// sendTimeout when > 0. The file is a duplicate the poller never saw: a
// descriptor it watches would wake it at every message, though nothing
// waits there.
func blockingDup(sc syscall.Conn, c io.Closer, sendTimeout time.Duration, name string) (*os.File, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	cerr := rc.Control(func(orig uintptr) {
		fd, err = unix.FcntlInt(orig, unix.F_DUPFD_CLOEXEC, 0)
	})
	_ = c.Close()
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	// The duplicate shares the original's status flags, and the original
	// is closed: this only changes fd's.
	_ = unix.SetNonblock(fd, false)
	if sendTimeout > 0 {
		tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// shutdown shuts f's socket down: how is syscall.SHUT_RD or SHUT_RDWR.
func shutdown(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), how) }); err != nil {
		return err
	}
	return serr
}
