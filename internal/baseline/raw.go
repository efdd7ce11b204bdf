package baseline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Raw is a child process that echoes msgpack values on a unix socket, each
// frame a big-endian uint32 length followed by one msgpack value (the
// protocol package's framing). It is the floor: a round trip over a socket to
// another process with nothing else in the way, no multiplexing and no RPC
// envelope.
//
// Raw is safe for concurrent use. Every connection carries one request at a
// time; concurrent callers never share one, so no caller waits for another
// caller's reply and the floor stays honest under concurrency.
type Raw struct {
	dir      string // holds the socket; removed by Close
	path     string
	cmd      *exec.Cmd
	lifeline *os.File      // the child exits when this write end closes
	exited   chan struct{} // closed once the child has been reaped

	mu     sync.Mutex
	idle   []*RawConn
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// RawConn is one connection to a Raw child, for a single goroutine: it is
// not safe for concurrent use. Giving each of N concurrent callers its own
// RawConn measures N independent round trips, with no queueing on the
// client side.
type RawConn struct {
	conn net.Conn
	buf  []byte // reused for replies
}

// StartRaw starts the child and returns once it has answered one echo.
//
// The parent creates the listening socket and hands it to the child, so
// connections can be made immediately and nobody polls for readiness; the
// parent drops its own copy so that once the child is gone, dialing fails
// rather than queueing forever.
func StartRaw() (*Raw, error) {
	return startRaw(rawRole)
}

// StartRawRelay starts a child that serves as Raw does, but relays each
// frame to up, on a connection of its own per connection, and its answer
// back: a round trip through it is the floor of two hops, client → relay
// → echo, beside Raw's one.
func StartRawRelay(up *Raw) (*Raw, error) {
	return startRaw(relayRole, upstreamEnv+"="+up.path)
}

// startRaw starts a child serving role on a socket of its own, with env
// added to its environment.
func startRaw(role string, env ...string) (*Raw, error) {
	exe, err := childCommandPath()
	if err != nil {
		return nil, err
	}
	// A short prefix keeps the socket path under the 104-byte sun_path
	// limit of some systems even with a long TMPDIR.
	dir, err := os.MkdirTemp("", "sib-")
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			_ = os.RemoveAll(dir)
		}
	}()
	path := filepath.Join(dir, "raw.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	_ = ln.Close()
	if err != nil {
		return nil, err
	}
	defer lnFile.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer lifeR.Close()

	cmd := exec.Command(exe, role)
	cmd.Env = append(childEnv(role), env...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{lnFile, lifeR}
	setParentDeathSignal(cmd)

	r := &Raw{dir: dir, path: path, cmd: cmd, lifeline: lifeW, exited: make(chan struct{})}
	if err := startOnLockedThread(cmd.Start, r.exited); err != nil {
		_ = lifeW.Close()
		return nil, fmt.Errorf("baseline: starting raw echo child: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()

	c, err := r.dial()
	if err == nil {
		err = c.conn.SetDeadline(time.Now().Add(startTimeout))
	}
	if err == nil {
		err = c.check(startProbe)
	}
	if err == nil {
		err = c.conn.SetDeadline(time.Time{})
	}
	if err != nil {
		if c != nil {
			_ = c.Close()
		}
		_ = r.Close()
		return nil, fmt.Errorf("baseline: raw echo child did not answer: %w", err)
	}
	r.idle = append(r.idle, c)
	started = true
	return r, nil
}

// startProbe is the value a fresh child must echo before it counts as
// started.
const startProbe = 0x5eed

// Echo makes one round trip of v on an idle connection, dialing a new one
// when every connection is busy; connections are kept for reuse, so a
// steady set of callers pays for dialing only once.
func (r *Raw) Echo(v int64) (int64, error) {
	c, err := r.get()
	if err != nil {
		return 0, err
	}
	got, err := c.Echo(v)
	if err != nil {
		// The stream may hold half a frame; it cannot be reused.
		_ = c.Close()
		return 0, err
	}
	r.put(c)
	return got, nil
}

// Conn dials a dedicated connection, for one goroutine that wants the bare
// floor without Echo's pool. The caller closes it; Close of r does not, but
// once the child is gone its calls fail.
func (r *Raw) Conn() (*RawConn, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, errRawClosed
	}
	return r.dial()
}

// Close kills the child, waits until it has been reaped and removes its
// socket. It is safe to call more than once.
func (r *Raw) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		idle := r.idle
		r.idle = nil
		r.mu.Unlock()
		for _, c := range idle {
			_ = c.Close()
		}
		_ = r.lifeline.Close()
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.closeErr = err
		}
		select {
		case <-r.exited:
		case <-time.After(startTimeout):
			r.closeErr = fmt.Errorf("baseline: raw echo child %d not reaped after SIGKILL", r.cmd.Process.Pid)
		}
		if err := os.RemoveAll(r.dir); err != nil && r.closeErr == nil {
			r.closeErr = err
		}
	})
	return r.closeErr
}

var errRawClosed = fmt.Errorf("baseline: raw echo server: %w", net.ErrClosed)

func (r *Raw) dial() (*RawConn, error) {
	conn, err := net.Dial("unix", r.path)
	if err != nil {
		return nil, err
	}
	return &RawConn{conn: conn}, nil
}

func (r *Raw) get() (*RawConn, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errRawClosed
	}
	if n := len(r.idle); n > 0 {
		c := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	return r.dial()
}

func (r *Raw) put(c *RawConn) {
	r.mu.Lock()
	if !r.closed {
		r.idle = append(r.idle, c)
		c = nil
	}
	r.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// Echo makes one round trip of v: one frame written with a single write,
// one frame read back.
func (c *RawConn) Echo(v int64) (int64, error) {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return 0, err
	}
	if err := protocol.WriteFrame(c.conn, body); err != nil {
		return 0, err
	}
	reply, err := protocol.ReadFrame(c.conn, c.buf)
	if err != nil {
		return 0, err
	}
	c.buf = reply
	var got int64
	if err := msgpack.Unmarshal(reply, &got); err != nil {
		return 0, err
	}
	return got, nil
}

// check is Echo that treats a wrong answer as an error.
func (c *RawConn) check(v int64) error {
	got, err := c.Echo(v)
	if err == nil && got != v {
		err = fmt.Errorf("echoed %d, want %d", got, v)
	}
	return err
}

// Close closes the connection; the child keeps serving others.
func (c *RawConn) Close() error { return c.conn.Close() }
