package protocol

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/vmihailenco/msgpack/v5"
)

// MethodCancel is the notification that cancels an in-flight request: its
// params are the request's id.
const MethodCancel = "$cancel"

// readBufferSize is what a session or call channel reads ahead. Small:
// a host holds one of each per interpreter, thousands of them idle.
const readBufferSize = 4 << 10

// maxInflight bounds the requests a peer serves at once, so a flood of
// requests cannot exhaust the other side's memory with goroutines.
const maxInflight = 4096

// PeerConfig configures a Peer. The zero value serves nothing and drops
// notifications.
type PeerConfig struct {
	// Handlers serve the peer's requests by method name.
	Handlers map[string]Handler
	// OnNotify receives notifications other than $cancel, in order, on the
	// reading goroutine: whatever it does happens before any later
	// response is delivered. It must not block for long.
	OnNotify func(method string, body []byte)
	// OnClose, when set, runs once the session has ended (Done is closed),
	// on the goroutine that read it: whoever must act on the end needs no
	// goroutine of its own waiting for it.
	OnClose func()
}

// Peer is one end of a symmetric, multiplexed RPC session over a stream
// connection. Both ends may call and serve at the same time.
type Peer struct {
	conn io.ReadWriteCloser
	cfg  PeerConfig

	wmu sync.Mutex // one frame per Write, frames never interleave

	mu       sync.Mutex
	nextID   uint32
	pending  map[uint32]*Call
	inflight map[uint32]context.CancelFunc
	err      error // why the session ended; set once

	done      chan struct{}
	closing   atomic.Bool
	closeOnce sync.Once

	busy  int             // requests served and not yet answered; guarded by mu
	idles []chan struct{} // Idle's channels, closed when busy drops to 0; guarded by mu
}

// Call is a request in flight. Done is closed when the response arrives or
// the session ends; then Result or Err is set.
type Call struct {
	ID     uint32
	Done   chan struct{}
	Result []byte
	Err    error
}

// ErrPeerClosed is the cause recorded when Close ended the session.
var ErrPeerClosed = &Error{Code: CodeClosed, Msg: "protocol: session closed"}

// NewPeer starts serving conn. The session ends when conn fails or Close is
// called; Done is closed then.
func NewPeer(conn io.ReadWriteCloser, cfg PeerConfig) *Peer {
	p := &Peer{
		conn:     conn,
		cfg:      cfg,
		pending:  make(map[uint32]*Call),
		inflight: make(map[uint32]context.CancelFunc),
		done:     make(chan struct{}),
	}
	go p.readLoop()
	return p
}

// Done is closed when the session has ended.
func (p *Peer) Done() <-chan struct{} { return p.done }

// Err reports why the session ended: ErrPeerClosed after Close, otherwise
// the read error (io.EOF when the other side went away). nil while open.
func (p *Peer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close ends the session and fails every pending call.
func (p *Peer) Close() error {
	p.closing.Store(true)
	err := p.conn.Close()
	<-p.done
	return err
}

// Go sends a request and returns at once. The caller waits on call.Done.
func (p *Peer) Go(method string, params any) (*Call, error) {
	c := &Call{Done: make(chan struct{})}
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		return nil, closedError(err)
	}
	p.nextID++
	c.ID = p.nextID
	p.pending[c.ID] = c
	p.mu.Unlock()

	fe := getEncoder()
	err := fe.request(c.ID, method, params)
	if err == nil {
		if werr := p.writeFrame(fe); werr != nil {
			// A write that fails means the other side is gone, as a read
			// error would: say so the same way.
			err = &Error{Code: CodeClosed, Msg: "protocol: session ended: " + werr.Error()}
		}
	}
	putEncoder(fe)
	if err != nil {
		p.mu.Lock()
		delete(p.pending, c.ID)
		p.mu.Unlock()
		return nil, err
	}
	return c, nil
}

// Cancel asks the other side to cancel c and stops waiting for it: c
// completes with err unless its response has already arrived.
func (p *Peer) Cancel(c *Call, err error) {
	p.mu.Lock()
	_, ok := p.pending[c.ID]
	delete(p.pending, c.ID)
	p.mu.Unlock()
	if ok {
		c.Err = err
		close(c.Done)
	}
	_ = p.Notify(MethodCancel, c.ID)
}

// Call sends a request and waits for its result. When ctx ends first the
// request is cancelled on the other side and ctx's error is returned.
func (p *Peer) Call(ctx context.Context, method string, params any) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := p.Go(method, params)
	if err != nil {
		return nil, err
	}
	select {
	case <-c.Done:
	case <-ctx.Done():
		p.Cancel(c, ctx.Err())
		<-c.Done
	}
	return c.Result, c.Err
}

// Notify sends a notification.
func (p *Peer) Notify(method string, params any) error {
	fe := getEncoder()
	defer putEncoder(fe)
	if err := fe.notification(method, params); err != nil {
		return err
	}
	return p.writeFrame(fe)
}

func (p *Peer) writeFrame(fe *frameEncoder) error {
	frame, err := fe.finish()
	if err != nil {
		return err
	}
	p.wmu.Lock()
	_, err = p.conn.Write(frame)
	p.wmu.Unlock()
	return err
}

func (p *Peer) readLoop() {
	// One read syscall usually brings a whole small frame, header and body;
	// a larger body is read straight into its own buffer.
	r := bufio.NewReaderSize(p.conn, readBufferSize)
	var err error
	for {
		var frame []byte
		frame, err = ReadFrame(r, nil)
		if err != nil {
			break
		}
		var m *Message
		m, err = DecodeMessage(frame)
		if err != nil {
			break
		}
		if err = p.dispatch(m); err != nil {
			break
		}
	}
	p.shutdown(err)
	if p.cfg.OnClose != nil {
		p.cfg.OnClose()
	}
}

func (p *Peer) dispatch(m *Message) error {
	switch m.Kind {
	case KindResponse:
		p.mu.Lock()
		c := p.pending[m.ID]
		delete(p.pending, m.ID)
		p.mu.Unlock()
		if c == nil {
			return nil // cancelled or abandoned: the answer is dropped
		}
		if m.Error != nil {
			c.Err = m.Error
		} else {
			c.Result = m.Body
		}
		close(c.Done)
	case KindNotification:
		if m.Method == MethodCancel {
			var id uint32
			if err := msgpack.Unmarshal(m.Body, &id); err != nil {
				return malformed("$cancel: %v", err)
			}
			p.mu.Lock()
			cancel := p.inflight[id]
			p.mu.Unlock()
			if cancel != nil {
				cancel()
			}
			return nil
		}
		if p.cfg.OnNotify != nil {
			p.cfg.OnNotify(m.Method, m.Body)
		}
	case KindRequest:
		p.serve(m)
	}
	return nil
}

func (p *Peer) serve(m *Message) {
	h := p.cfg.Handlers[m.Method]
	if h == nil {
		go p.respond(m.ID, Errorf(CodeProtocol, "protocol: unknown method %q", m.Method), nil)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	if p.err != nil || len(p.inflight) >= maxInflight {
		p.mu.Unlock()
		cancel()
		go p.respond(m.ID, Errorf(CodeUnavailable, "protocol: too many requests in flight"), nil)
		return
	}
	p.inflight[m.ID] = cancel
	p.busy++
	p.mu.Unlock()
	go func() {
		res, err := h(ctx, m.Body)
		p.mu.Lock()
		delete(p.inflight, m.ID)
		p.mu.Unlock()
		cancel()
		p.respond(m.ID, AsError(err), res)
		p.mu.Lock()
		p.busy--
		if p.busy == 0 {
			for _, ch := range p.idles {
				close(ch)
			}
			p.idles = nil
		}
		p.mu.Unlock()
	}()
}

// Idle returns a channel that is closed once every request this peer is
// serving has been answered: a server that stops taking requests waits on
// it so that it does not close the session under an answer not yet sent.
func (p *Peer) Idle() <-chan struct{} {
	ch := make(chan struct{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy == 0 {
		close(ch)
	} else {
		p.idles = append(p.idles, ch)
	}
	return ch
}

func (p *Peer) respond(id uint32, rerr *Error, res any) {
	res, after := Unwrap(res)
	sent := false
	defer func() { after(sent) }()
	fe := getEncoder()
	defer putEncoder(fe)
	err := fe.response(id, rerr, res)
	if err != nil {
		// The result could not be encoded: tell the caller instead of
		// leaving it waiting.
		fe = getEncoder()
		defer putEncoder(fe)
		if err := fe.response(id, AsError(err), nil); err != nil {
			return
		}
	}
	sent = p.writeFrame(fe) == nil && err == nil && rerr == nil
}

func (p *Peer) shutdown(err error) {
	if p.closing.Load() {
		err = ErrPeerClosed
	}
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	pending := p.pending
	p.pending = map[uint32]*Call{}
	inflight := p.inflight
	p.inflight = map[uint32]context.CancelFunc{}
	p.mu.Unlock()
	_ = p.conn.Close()
	for _, c := range pending {
		c.Err = closedError(err)
		close(c.Done)
	}
	for _, cancel := range inflight {
		cancel()
	}
	close(p.done)
}

func closedError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeClosed, Msg: "protocol: session ended: " + err.Error()}
}

// AsError converts err to a wire *Error: an *Error (also wrapped) as is, a
// context error as CodeCanceled or CodeDeadlineExceeded, anything else as
// CodeInterpreter. nil stays nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeCanceled, Msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeDeadlineExceeded, Msg: err.Error()}
	}
	return &Error{Code: CodeInterpreter, Msg: err.Error()}
}
