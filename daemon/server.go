package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// Server is a daemon that is listening. Make one with Listen and run it
// with Serve; Serve must be called, even with a context already done, to
// release what Listen took.
type Server struct {
	cfg   Config
	log   hclog.Logger
	sup   *supervisor.Supervisor
	token []byte
	uid   int
	m     *metrics

	unixL    *net.UnixListener
	unixInfo os.FileInfo
	tcpL     net.Listener
	metricsL net.Listener
	status   *statusServer // nil without Config.HTTPAddr
	started  time.Time

	// hardCtx ends every handler: cancelled when the shutdown grace is
	// over. drainCtx ends the handlers that only wait (queue gets and
	// puts): cancelled when the shutdown begins.
	hardCtx   context.Context
	hardStop  context.CancelFunc
	drainCtx  context.Context
	drainStop context.CancelFunc
	aborted   chan struct{} // closed by Abort
	abortOnce sync.Once

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	pins     map[int64]int // queue references the daemon holds itself (queue.pin)
	inflight sync.WaitGroup
	active   atomic.Int64 // requests in flight, for logs
	nextConn atomic.Uint64
	blocking atomic.Int64 // call streams whose socket is blocking (maxBlockingStreams)

	served atomic.Bool
}

// Serve listens as cfg says and serves until ctx ends, then shuts down
// cleanly and returns nil. Errors are about starting: a bad configuration,
// or a live daemon already on the socket (ErrAlreadyServing).
func Serve(ctx context.Context, cfg Config) error {
	s, err := Listen(cfg)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Listen checks cfg, starts the supervisor and opens the listeners. Clients
// can connect once it returns; their requests are served once Serve runs.
func Listen(cfg Config) (_ *Server, err error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, uid: os.Getuid(), conns: make(map[*conn]struct{}), pins: make(map[int64]int), started: time.Now()}
	s.hardCtx, s.hardStop = context.WithCancel(context.Background())
	s.drainCtx, s.drainStop = context.WithCancel(context.Background())
	s.aborted = make(chan struct{})
	defer func() {
		if err != nil {
			s.closeListeners()
			if s.metricsL != nil {
				_ = s.metricsL.Close()
			}
			if s.status != nil {
				_ = s.status.l.Close()
			}
			s.hardStop()
			s.drainStop()
		}
	}()

	if cfg.Listen != "" {
		if cfg.TLS == nil {
			return nil, errors.New("serving TCP needs TLS: give a certificate and key")
		}
		if cfg.TokenFile == "" {
			return nil, errors.New("serving TCP needs a token file")
		}
	}
	if cfg.TokenFile != "" && (cfg.Listen != "" || cfg.HTTPAddr != "") {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		s.token = []byte(strings.TrimSpace(string(b)))
		if len(s.token) == 0 {
			return nil, fmt.Errorf("token file %s is empty", cfg.TokenFile)
		}
	}

	if err := s.listenStatus(); err != nil {
		return nil, err
	}

	supCfg := cfg.Supervisor
	supCfg.Stdout = &outputLog{log: s.log}
	sup, err := supervisor.New(supCfg)
	if err != nil {
		return nil, fmt.Errorf("start the supervisor: %w", err)
	}
	s.sup = sup
	s.m = newMetrics(s.sup, s.connCount, cfg.Node)

	// Only the daemon's user may connect, unless others are allowed: then
	// the kernel lets everyone connect and the uid check on each
	// connection is the gate.
	mode := os.FileMode(0o600)
	if len(cfg.AllowUIDs) > 0 {
		mode = 0o666
	}
	ul, info, err := listenUnix(cfg.Socket, mode, s.log)
	if err != nil {
		return nil, err
	}
	s.unixL, s.unixInfo = ul, info
	if cfg.Listen != "" {
		l, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		tcfg := cfg.TLS.Clone()
		if tcfg.MinVersion == 0 {
			tcfg.MinVersion = tls.VersionTLS12
		}
		// Its call streams' sockets are made blocking under TLS.
		s.tcpL = tls.NewListener(socket.UnpolledListener{Listener: l}, tcfg)
	}
	if cfg.MetricsAddr != "" && cfg.MetricsAddr != cfg.HTTPAddr {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		s.metricsL = ml
	}
	return s, nil
}

// SocketPath is the Unix socket the daemon serves.
func (s *Server) SocketPath() string { return s.cfg.Socket }

// TCPAddr is the address of the TCP listener, or nil without one.
func (s *Server) TCPAddr() net.Addr {
	if s.tcpL == nil {
		return nil
	}
	return s.tcpL.Addr()
}

// MetricsAddr is the address metrics are served on, or nil.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsL == nil {
		if s.cfg.MetricsAddr != "" {
			return s.HTTPAddr() // shared with the status page
		}
		return nil
	}
	return s.metricsL.Addr()
}

// Gatherer gives the daemon's metrics, as served on MetricsAddr.
func (s *Server) Gatherer() prometheus.Gatherer { return s.m.reg }

// Serve serves until ctx ends, then shuts down: it stops accepting, lets
// in-flight calls run for the shutdown grace, cancels what is left, closes
// every connection and interpreter, removes the socket and returns nil.
// It may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("daemon: Serve called twice")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.accept(s.unixL, true)
	}()
	if s.tcpL != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.accept(s.tcpL, false)
		}()
	}
	var metricsSrv *http.Server
	if s.metricsL != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := metricsSrv.Serve(s.metricsL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server failed", "error", err)
			}
		}()
	}
	stopStatus := s.serveStatus(&wg)
	attrs := []any{"socket", s.cfg.Socket, "pid", os.Getpid(), "protocol", protocol.Version}
	if a := s.TCPAddr(); a != nil {
		attrs = append(attrs, "tcp", a.String())
	}
	if a := s.MetricsAddr(); a != nil {
		attrs = append(attrs, "metrics", a.String())
	}
	s.log.Info("serving", attrs...)

	select {
	case <-ctx.Done():
	case <-s.aborted:
	}
	s.shutdown()
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	stopStatus()
	wg.Wait()
	s.log.Info("stopped")
	return nil
}

// Abort cuts the shutdown's grace short: the calls still in flight are
// cancelled at once, and Serve returns once they have stopped. Called
// before Serve's context ends, it starts the shutdown too. It is what a
// second signal to a daemon that is shutting down asks for.
func (s *Server) Abort() {
	s.abortOnce.Do(func() { close(s.aborted) })
}

func (s *Server) closeListeners() {
	if s.unixL != nil {
		_ = s.unixL.Close()
		removeSocket(s.cfg.Socket, s.unixInfo)
	}
	if s.tcpL != nil {
		_ = s.tcpL.Close()
	}
}

// shutdown runs once ctx has ended. Cleanup runs on its own bounded
// timers: the context that asked for it is already done.
func (s *Server) shutdown() {
	s.closeListeners()
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.drainStop()
	n := s.active.Load()
	s.log.Info("shutting down", "in_flight", n, "grace", max(s.cfg.ShutdownGrace, 0))

	idle := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(idle)
	}()
	if n > 0 && s.cfg.ShutdownGrace > 0 {
		select {
		case <-idle:
		case <-time.After(s.cfg.ShutdownGrace):
			s.log.Warn("cancelling calls still in flight after the grace period", "in_flight", s.active.Load())
		case <-s.aborted:
			s.log.Warn("cancelling calls still in flight: shutdown forced", "in_flight", s.active.Load())
		}
	}
	s.hardStop()
	// Cancelled calls return once their VM stopped or their worker was
	// killed; the supervisor bounds both.
	select {
	case <-idle:
	case <-time.After(s.killBound()):
		s.log.Warn("calls did not return after cancellation; closing anyway", "in_flight", s.active.Load())
	}

	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Answers of the calls that just ended may still be on their way out.
	actx, cancel := context.WithTimeout(context.Background(), answerWait)
	for _, c := range conns {
		c.closeAnswered(actx.Done())
	}
	cancel()
	_ = s.sup.Close()
}

// killBound is how long cancelled calls may take to return: the kill grace
// plus the worker's exit and reaping.
func (s *Server) killBound() time.Duration {
	g := s.cfg.Supervisor.KillGrace
	if g <= 0 {
		g = supervisor.DefaultKillGrace
	}
	return g + 5*time.Second
}

func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// accept serves a listener until it is closed.
func (s *Server) accept(l net.Listener, isUnix bool) {
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry
			// rather than spin or die.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.handshake(nc, isUnix)
	}
}

// handshake admits or refuses a new connection. A refused client is told
// why, in answer to its hello, before the connection is closed.
func (s *Server) handshake(nc net.Conn, isUnix bool) {
	_ = nc.SetDeadline(time.Now().Add(helloTimeout))
	connID := s.nextConn.Add(1)
	log := s.log.With("conn", connID, "remote", remoteName(nc, isUnix))
	uid := -1
	var refuse *protocol.Error
	if isUnix {
		var err error
		uid, err = peerUID(nc)
		switch {
		case err != nil:
			refuse = protocol.Errorf(protocol.CodePermissionDenied, "cannot check the connecting user: %v", err)
		case !s.allowed(uid):
			refuse = protocol.Errorf(protocol.CodePermissionDenied,
				"uid %d may not use this daemon: it serves uid %d (allow others with serve --allow-uid)", uid, s.uid)
		}
		log = log.With("uid", uid)
	}
	// Before the client is known, it gets no more memory than a hello
	// needs.
	hello, id, err := protocol.ReadHello(io.LimitReader(nc, maxHelloBytes))
	if err != nil {
		var e *protocol.Error
		if errors.As(err, &e) && id != 0 {
			_ = protocol.AnswerHello(nc, id, protocol.HelloResult{}, e)
		}
		log.Debug("connection closed before a valid hello", "error", err)
		nc.Close()
		return
	}
	if refuse == nil && hello.Version != protocol.Version {
		refuse = protocol.VersionMismatch(hello.Version, protocol.Version)
	}
	if refuse == nil && !isUnix && !s.tokenOK(hello.Token) {
		refuse = protocol.Errorf(protocol.CodePermissionDenied, "missing or wrong token")
	}
	if refuse == nil && hello.Attach != nil {
		s.attach(nc, id, hello.Attach, uid, log)
		return
	}
	c := &conn{s: s, id: connID, log: log, uid: uid, key: newKey(), refs: make(map[int64]int), streams: make(map[uint64]*stream), ready: make(chan struct{})}
	c.ctx, c.stop = context.WithCancel(context.Background())
	if refuse == nil {
		s.mu.Lock()
		if s.draining {
			refuse = protocol.Errorf(protocol.CodeUnavailable, "the daemon is shutting down")
		} else {
			s.conns[c] = struct{}{}
		}
		s.mu.Unlock()
	}
	if refuse != nil {
		log.Warn("refused a client", "reason", refuse.Msg)
		_ = protocol.AnswerHello(nc, id, protocol.HelloResult{}, refuse)
		nc.Close()
		c.stop()
		return
	}
	res := protocol.HelloResult{Version: protocol.Version, Pid: os.Getpid(), Session: c.id, Key: c.key}
	if err := protocol.AnswerHello(nc, id, res, nil); err != nil {
		log.Debug("hello answer failed", "error", err)
		c.stop()
		c.release()
		close(c.ready)
		s.forget(c)
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	log.Debug("client connected")
	c.start(nc)
}

// tokenOK compares digests in constant time, so neither the token's bytes
// nor its length show in how long a refusal takes.
func (s *Server) tokenOK(token string) bool {
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256(s.token)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (s *Server) allowed(uid int) bool {
	if uid == s.uid {
		return true
	}
	for _, u := range s.cfg.AllowUIDs {
		if u == uid {
			return true
		}
	}
	return false
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func remoteName(nc net.Conn, isUnix bool) string {
	if isUnix {
		return "unix"
	}
	return nc.RemoteAddr().String()
}

// enter admits one request, unless shutdown has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.inflight.Add(1)
	s.active.Add(1)
	return true
}

func (s *Server) leave() {
	s.active.Add(-1)
	s.inflight.Done()
}

// outputLog is where interpreter output goes when no caller asked for it:
// calls made from Lua in another interpreter. id is set once the
// interpreter exists (0: one created from Lua, whose id the daemon does not
// learn).
type outputLog struct {
	log hclog.Logger
	id  atomic.Int64
}

func (o *outputLog) Write(p []byte) (int, error) {
	if id := o.id.Load(); id != 0 {
		o.log.Debug("interpreter output", "interpreter", id, "output", string(p))
	} else {
		o.log.Debug("interpreter output", "output", string(p))
	}
	return len(p), nil
}

// list describes the live interpreters; with stats it asks every worker
// for its resource use, a bounded number at a time.
func (s *Server) list(ctx context.Context, stats bool) []protocol.InterpInfo {
	infos := s.sup.List()
	out := make([]protocol.InterpInfo, len(infos))
	for i, in := range infos {
		out[i] = protocol.InterpInfo{ID: in.ID, Pid: in.Pid, CreatedUnixNano: in.Created.UnixNano(), Running: in.Running, Calls: in.Calls}
	}
	if !stats {
		return out
	}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			if st, err := s.sup.Stats(sctx, out[i].ID); err == nil {
				out[i].RSSBytes = st.RSSBytes
				out[i].CPUNanos = st.CPUNanos
			}
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) queueList() []protocol.QueueEntry {
	qs := s.sup.Queues()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]protocol.QueueEntry, len(qs))
	for i, q := range qs {
		out[i] = protocol.QueueEntry{ID: q.ID, MaxSize: q.MaxSize, Unbound: q.Unbound, Size: q.Size, Pinned: s.pins[q.ID], Waiting: q.Waiting}
	}
	return out
}

// pin takes a reference the daemon holds itself, so the queue outlives
// every connection, until unpin.
func (s *Server) pin(id int64) error {
	if err := s.sup.RetainQueue(id); err != nil {
		return err
	}
	s.mu.Lock()
	s.pins[id]++
	s.mu.Unlock()
	return nil
}

func (s *Server) unpin(id int64) error {
	s.mu.Lock()
	n := s.pins[id]
	switch {
	case n == 0:
		s.mu.Unlock()
		if _, err := s.sup.Queue(id); err != nil {
			return err
		}
		return protocol.Errorf(protocol.CodeInvalidArgument, "queue %d is not pinned", id)
	case n == 1:
		delete(s.pins, id)
	default:
		s.pins[id] = n - 1
	}
	s.mu.Unlock()
	s.sup.ReleaseQueue(id)
	return nil
}
