package interpreters

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// Bounded waits of a remote runtime.
const (
	// helloTimeout bounds connecting and the hello exchange when the
	// caller's context has no deadline of its own.
	helloTimeout = 10 * time.Second
	// cancelWait is how long a cancelled call waits for the daemon's
	// answer. The daemon answers once the interpreter stopped or its worker
	// was killed (a second or so), and waiting for that keeps the local
	// rules: when CallContext returns the interpreter is no longer running,
	// and a cancelled queue Get either lost nothing or returned its item.
	// Past it the call is abandoned rather than hang.
	cancelWait = 10 * time.Second
	// releaseTimeout bounds a queue release sent from a handle's cleanup.
	releaseTimeout = 10 * time.Second
)

// Dial connects to a running daemon (`subinterp serve`) and returns a
// Runtime whose interpreters live in the daemon and behave exactly like
// local ones: the same methods, values and errors.
//
// addr is a Unix socket path, the same written unix://PATH, or
// tcp://HOST:PORT. TCP needs WithToken and uses TLS: WithTLS sets its
// configuration (for example the CA that signed the daemon's certificate);
// without it the system roots verify the daemon. On a Unix socket the
// daemon admits its own user (and those it was told to allow) and needs no
// token.
//
// opts set the defaults of every interpreter the runtime creates, as with
// New. WithStdout also names where the output of this runtime's calls on
// interpreters it did not create goes (default: os.Stdout at the time of
// each write): a daemon sends each connection the output of its own calls.
//
// Interpreters outlive the connection: Close on the runtime ends the
// connection, not them. If the connection is lost, calls fail with an
// error matching ErrUnavailable (and ErrInterpreter); they never hang.
func Dial(ctx context.Context, addr string, opts ...Option) (*Runtime, error) {
	o := collect(options{}, opts)
	o.fail(o.misplaced(onDial))
	if o.err != nil {
		return nil, o.err
	}
	if isClusterAddr(addr) {
		cb, err := dialCluster(ctx, addr, o)
		if err != nil {
			return nil, err
		}
		return newRuntime(o, func() (backend, error) { return cb, nil }), nil
	}
	rb, err := dialDaemon(ctx, addr, o)
	if err != nil {
		return nil, err
	}
	return newRuntime(o, func() (backend, error) { return rb, nil }), nil
}

// ParseAddr splits a daemon address as Dial reads it into a network
// ("unix" or "tcp") and an address for net.Dial; a cluster's address
// (nats://HOST:PORT or tls://HOST:PORT, several comma-separated) is
// network "nats" and the address as given.
func ParseAddr(addr string) (network, address string, err error) {
	switch {
	case isClusterAddr(addr):
		network, address = "nats", addr
	case strings.HasPrefix(addr, "unix://"):
		network, address = "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "tcp://"):
		network, address = "tcp", strings.TrimPrefix(addr, "tcp://")
		if _, _, err := net.SplitHostPort(address); err != nil {
			return "", "", errorf(ErrInvalidArgument, "daemon address %q: %v", addr, err)
		}
	case strings.Contains(addr, "://"):
		return "", "", errorf(ErrInvalidArgument, "daemon address %q: want a socket path, unix://PATH, tcp://HOST:PORT or a cluster's nats://HOST:PORT", addr)
	default:
		network, address = "unix", addr
	}
	if address == "" {
		return "", "", errorf(ErrInvalidArgument, "daemon address %q is empty", addr)
	}
	return network, address, nil
}

func unavailable(format string, args ...any) *protocol.Error {
	return protocol.Errorf(protocol.CodeUnavailable, format, args...)
}

func dialDaemon(ctx context.Context, addr string, o options) (*remoteBackend, error) {
	conn, res, err := dialHello(ctx, addr, o, protocol.HelloParams{Version: protocol.Version, Token: o.token})
	if err != nil {
		return nil, err
	}
	out := o.stdout
	if out == nil {
		out = hostStdout{}
	}
	rb := &remoteBackend{addr: addr, pid: res.Pid, opts: o, attach: protocol.StreamAttach{Session: res.Session, Key: res.Key},
		defaultOut: out, outs: make(map[int64]io.Writer), restarts: make(map[int64]func(supervisor.RestartEvent)), streams: make(map[*callStream]bool)}
	rb.peer = protocol.NewPeer(conn, protocol.PeerConfig{
		OnNotify: rb.notify,
		Handlers: map[string]protocol.Handler{protocol.MethodHostCall: protocol.Handle(rb.host.serve)},
	})
	return rb, nil
}

// dialHello connects to the daemon at addr and says hello: a new
// connection, admitted.
func dialHello(ctx context.Context, addr string, o options, hello protocol.HelloParams) (net.Conn, protocol.HelloResult, error) {
	var res protocol.HelloResult
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, res, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, helloTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, res, &opError{msg: fmt.Sprintf("cannot reach the subinterp daemon at %s: %v", addr, err), kind: ErrUnavailable, cause: err}
	}
	if network == "tcp" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.tls != nil {
			cfg = o.tls.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(address)
		}
		// A call stream's socket is made blocking once its hello is
		// answered (see openStream).
		tc := tls.Client(socket.NewUnpolled(conn), cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, res, &opError{msg: fmt.Sprintf("TLS handshake with the subinterp daemon at %s failed: %v", addr, err), kind: ErrUnavailable, cause: err}
		}
		conn = tc
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	res, err = protocol.ClientHello(conn, hello)
	if err != nil {
		conn.Close()
		var e *protocol.Error
		if errors.As(err, &e) {
			e2 := *e
			e2.Msg = fmt.Sprintf("the subinterp daemon at %s refused the connection: %s", addr, e.Msg)
			return nil, res, fromWire(&e2)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, res, &opError{msg: fmt.Sprintf("no answer from the subinterp daemon at %s: %v", addr, err), kind: ErrUnavailable, cause: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, res, nil
}

// remoteBackend drives a daemon over one control session, or one node of
// a cluster through via.
type remoteBackend struct {
	addr       string
	pid        int
	opts       options               // how to dial: TLS and token
	attach     protocol.StreamAttach // what the session's call streams attach with
	peer       *protocol.Peer
	defaultOut io.Writer
	// via, when set, carries each request instead of peer: a cluster
	// node's requests go through the cluster client, which cancels them
	// and bounds the wait itself.
	via  func(ctx context.Context, method string, params any) ([]byte, error)
	host remoteHost

	mu       sync.Mutex
	outs     map[int64]io.Writer                     // the writers of interpreters this runtime created with their own
	restarts map[int64]func(supervisor.RestartEvent) // the OnRestart of interpreters this runtime created with one
	streams  map[*callStream]bool                    // every open call stream: true when idle
	idle     []*callStream                           // the idle ones, most recently used last
	closed   bool
}

var _ backend = (*remoteBackend)(nil)

// notify runs on the session's reader: output is written before the
// response of the call that produced it is delivered.
func (r *remoteBackend) notify(method string, body []byte) {
	switch method {
	case protocol.NotifyRestart:
		r.restarted(body)
	case protocol.NotifyOutput:
		r.output(body)
	case protocol.NotifyHostRelease:
		r.host.released(body)
	case protocol.NotifyHostCancel:
		r.hostCancelled(body)
	}
}

// output writes a call's output to the writer of its interpreter.
func (r *remoteBackend) output(body []byte) {
	var p protocol.OutputParams
	if err := msgpack.Unmarshal(body, &p); err != nil || len(p.Data) == 0 {
		return
	}
	r.mu.Lock()
	w := r.outs[p.ID]
	r.mu.Unlock()
	if w == nil {
		w = r.defaultOut
	}
	_, _ = w.Write(p.Data)
}

// restarted hands a restart attempt to the OnRestart of the policy the
// interpreter was created with.
func (r *remoteBackend) restarted(body []byte) {
	var n protocol.RestartNotice
	if err := msgpack.Unmarshal(body, &n); err != nil {
		return
	}
	r.mu.Lock()
	f := r.restarts[n.ID]
	if n.GaveUp {
		delete(r.restarts, n.ID)
	}
	r.mu.Unlock()
	if f == nil {
		return
	}
	ev := supervisor.RestartEvent{InterpreterID: n.ID, Attempt: n.Attempt, Cause: n.Cause, GaveUp: n.GaveUp}
	if n.Err != nil {
		ev.Err = n.Err
	}
	f(ev)
}

// roundTrip sends one request and waits for its answer. A cancelled ctx
// sends $cancel and still waits, boundedly, for the daemon's answer, which
// then says what happened.
func (r *remoteBackend) roundTrip(ctx context.Context, method string, params any) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, protocol.AsError(err)
	}
	if r.via != nil {
		res, err := r.via(ctx, method, params)
		if err != nil {
			return nil, r.wireError(ctx, err)
		}
		return res, nil
	}
	c, err := r.peer.Go(method, params)
	if err != nil {
		return nil, r.wireError(ctx, err)
	}
	select {
	case <-c.Done:
	case <-ctx.Done():
		_ = r.peer.Notify(protocol.MethodCancel, c.ID)
		t := time.NewTimer(cancelWait)
		select {
		case <-c.Done:
		case <-t.C:
			r.peer.Cancel(c, ctx.Err())
			<-c.Done
		}
		t.Stop()
	}
	if c.Err != nil {
		return nil, r.wireError(ctx, c.Err)
	}
	return c.Result, nil
}

// do is roundTrip decoding the result into out, when out is not nil.
func (r *remoteBackend) do(ctx context.Context, method string, params, out any) error {
	res, err := r.roundTrip(ctx, method, params)
	return decodeAnswer(method, res, err, out)
}

// doStream is do on a call stream.
func (r *remoteBackend) doStream(ctx context.Context, method string, params, out any) error {
	res, err := r.streamTrip(ctx, method, params)
	return decodeAnswer(method, res, err, out)
}

func decodeAnswer(method string, res []byte, err error, out any) error {
	if err != nil || out == nil {
		return err
	}
	if err := msgpack.Unmarshal(res, out); err != nil {
		return protocol.Errorf(protocol.CodeProtocol, "%s: malformed answer from the daemon: %v", method, err)
	}
	return nil
}

// wireError makes a session failure an ErrUnavailable, and makes a call
// the caller gave up on match the caller's reason: the daemon only saw a
// cancellation, whatever the reason was.
func (r *remoteBackend) wireError(ctx context.Context, err error) error {
	e := protocol.AsError(err)
	if e.Code == protocol.CodeClosed {
		return unavailable("lost the connection to the subinterp daemon at %s: %s", r.addr, e.Msg)
	}
	if e.Has(protocol.CodeDeadlineExceeded) {
		// The daemon's timer may fire a moment before ours.
		if dl, ok := ctx.Deadline(); ok && ctx.Err() == nil && time.Until(dl) <= 100*time.Millisecond {
			t := time.NewTimer(time.Until(dl) + 10*time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	ctxErr := ctx.Err()
	if ctxErr == nil {
		return e
	}
	want := protocol.AsError(ctxErr).Code
	isCtx := func(c protocol.Code) bool { return c == protocol.CodeCanceled || c == protocol.CodeDeadlineExceeded }
	switch {
	case isCtx(e.Code) && e.Code != want:
		e2 := *e
		e2.Code = want
		return &e2
	case isCtx(e.Cause) && e.Cause != want:
		e2 := *e
		e2.Cause = want
		return &e2
	}
	return e
}

// timeoutNs is ctx's remaining time, for the daemon to apply as its own
// deadline; 0 when ctx has none.
func timeoutNs(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return int64(max(time.Until(dl), 1))
}

func (r *remoteBackend) Create(ctx context.Context, opts supervisor.CreateOptions) (int64, error) {
	var id int64
	p := &protocol.CreateParams{
		Stdlib:        opts.Stdlib,
		MemoryLimit:   opts.Limits.MemoryBytes,
		CPULimitNs:    int64(opts.Limits.CPUPerCall),
		CPUTotalNs:    int64(opts.Limits.CPUTotal),
		CallTimeoutNs: int64(opts.Limits.CallTimeout),
		OutputLimit:   opts.Limits.OutputBytes,
		CreateLimit:   int64(opts.Limits.Created),
		HostFuncs:     r.host.refs(opts.Hosting.Funcs, opts.Hosting.Shared),
		Modules:       opts.Hosting.Modules,
		Confined:      opts.Hosting.Confined,
	}
	if rp := opts.Restart; rp != nil {
		p.Restart = &protocol.RestartParams{
			MaxRestarts:  rp.MaxRestarts,
			PeriodNs:     int64(rp.Period),
			InitScript:   rp.InitScript,
			BackoffNs:    int64(rp.Backoff),
			MaxBackoffNs: int64(rp.MaxBackoff),
			Notify:       rp.OnRestart != nil,
		}
	}
	if err := r.do(ctx, protocol.ControlCreate, p, &id); err != nil {
		return 0, err
	}
	r.mu.Lock()
	if opts.Stdout != nil {
		r.outs[id] = opts.Stdout
	}
	if opts.Restart != nil && opts.Restart.OnRestart != nil {
		r.restarts[id] = opts.Restart.OnRestart
	}
	r.mu.Unlock()
	return id, nil
}

func (r *remoteBackend) Exec(ctx context.Context, id int64, name, src string) error {
	return r.doStream(ctx, protocol.ControlExec, &protocol.ControlExecParams{ID: id, Source: src, TimeoutNs: timeoutNs(ctx), Name: name}, nil)
}

func (r *remoteBackend) Call(ctx context.Context, id int64, fn string, args []byte) ([]byte, error) {
	return r.streamTrip(ctx, protocol.ControlCall, &protocol.ControlCallParams{ID: id, Fn: fn, Args: args, TimeoutNs: timeoutNs(ctx)})
}

func (r *remoteBackend) PrepareMain(ctx context.Context, id int64, names []byte) error {
	return r.doStream(ctx, protocol.ControlPrepareMain, &protocol.InterpPrepareParams{ID: id, Names: names}, nil)
}

func (r *remoteBackend) CloseInterpreter(id int64) error {
	err := r.do(context.Background(), protocol.ControlClose, &protocol.IDParams{ID: id}, nil)
	if err == nil || errors.Is(fromWire(err), ErrInterpreterNotFound) {
		r.mu.Lock()
		delete(r.outs, id)
		delete(r.restarts, id)
		r.mu.Unlock()
	}
	return err
}

func (r *remoteBackend) IsRunning(id int64) (bool, error) {
	var running bool
	err := r.do(context.Background(), protocol.ControlIsRunning, &protocol.IDParams{ID: id}, &running)
	return running, err
}

func (r *remoteBackend) Pid(id int64) (int, error) {
	var pid int
	err := r.do(context.Background(), protocol.ControlPid, &protocol.IDParams{ID: id}, &pid)
	return pid, err
}

func (r *remoteBackend) Exists(id int64) (bool, error) {
	var ok bool
	err := r.do(context.Background(), protocol.ControlExists, &protocol.IDParams{ID: id}, &ok)
	return ok, err
}

func (r *remoteBackend) list(ctx context.Context, stats bool) ([]protocol.InterpInfo, error) {
	var infos []protocol.InterpInfo
	err := r.do(ctx, protocol.ControlList, &protocol.ListParams{Stats: stats}, &infos)
	return infos, err
}

func (r *remoteBackend) List(ctx context.Context) ([]supervisor.Info, error) {
	infos, err := r.list(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.Info, len(infos))
	for i, in := range infos {
		out[i] = supervisor.Info{ID: in.ID, Pid: in.Pid, Created: time.Unix(0, in.CreatedUnixNano), Running: in.Running, Calls: in.Calls}
	}
	return out, nil
}

func (r *remoteBackend) Describe(ctx context.Context) ([]InterpreterInfo, error) {
	infos, err := r.list(ctx, true)
	if err != nil {
		return nil, err
	}
	out := make([]InterpreterInfo, len(infos))
	for i, in := range infos {
		out[i] = InterpreterInfo{
			ID: in.ID, Pid: in.Pid, Created: time.Unix(0, in.CreatedUnixNano), Running: in.Running, Calls: in.Calls,
			RSSBytes: in.RSSBytes, CPUTime: time.Duration(in.CPUNanos),
		}
	}
	return out, nil
}

// Stats asks the daemon for the resource use of id's worker (a pool's
// MaxWorkerRSS needs it).
func (r *remoteBackend) Stats(ctx context.Context, id int64) (protocol.WorkerStats, error) {
	var st protocol.WorkerStats
	err := r.do(ctx, protocol.ControlStats, &protocol.IDParams{ID: id}, &st)
	return st, err
}

// Close ends the connection; the daemon releases the queue references it
// held, and its interpreters live on.
func (r *remoteBackend) Close() error {
	r.closeStreams()
	if r.peer != nil {
		_ = r.peer.Close()
	}
	return nil
}

func (r *remoteBackend) CreateQueue(maxsize int, mode protocol.UnboundMode) (int64, error) {
	var id int64
	err := r.do(context.Background(), protocol.ControlQueueCreate, &protocol.QueueCreateParams{MaxSize: maxsize, Unbound: mode}, &id)
	return id, err
}

func (r *remoteBackend) RetainQueue(id int64) error {
	return r.do(context.Background(), protocol.ControlQueueRetain, &protocol.IDParams{ID: id}, nil)
}

// ReleaseQueue runs from a handle's cleanup, which must not wait on the
// network, so the release is sent in the background. The reference it
// drops was counted by the daemon before the handle could exist, so the
// release cannot overtake it.
func (r *remoteBackend) ReleaseQueue(id int64) {
	if r.via != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			_, _ = r.via(ctx, protocol.ControlQueueRelease, &protocol.IDParams{ID: id})
		}()
		return
	}
	select {
	case <-r.peer.Done():
		return // the daemon released everything with the connection
	default:
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		_, _ = r.peer.Call(ctx, protocol.ControlQueueRelease, &protocol.IDParams{ID: id})
	}()
}

func (r *remoteBackend) Queue(id int64) (supervisor.QueueInfo, error) {
	var info protocol.QueueInfo
	if err := r.do(context.Background(), protocol.ControlQueueInfo, &protocol.IDParams{ID: id}, &info); err != nil {
		return supervisor.QueueInfo{}, err
	}
	return supervisor.QueueInfo{ID: id, MaxSize: info.MaxSize, Unbound: info.Unbound, Size: info.Size}, nil
}

// QueuePut: a non-blocking put is one quick try even under an expired
// context, as it is locally.
func (r *remoteBackend) QueuePut(ctx context.Context, p supervisor.PutRequest) error {
	if !p.Block {
		ctx = context.Background()
	}
	err := r.doStream(ctx, protocol.ControlQueuePut, &protocol.QueuePutParams{ID: p.Queue, Value: p.Item, Unbound: p.Unbound, Block: p.Block, TimeoutNs: timeoutNs(ctx)}, nil)
	return queueWaitEnded(ctx, err, p.Queue, protocol.CodeQueueFull)
}

// queueWaitEnded makes the end of a queue operation's context, when it
// ends the operation on this side of the connection (before the request
// went out, or while waiting for its answer), the queue's own error with
// the context's reason as its cause, as the daemon reports it.
//
// When ctx has ended, its reason is the wait's cause even if the daemon's
// answer came first: ending ctx cancels the request, and the daemon then
// reports its wait cancelled, where the caller's deadline is the reason.
func queueWaitEnded(ctx context.Context, err error, id int64, code protocol.Code) error {
	if e := protocol.AsError(err); e != nil && (e.Code == protocol.CodeCanceled || e.Code == protocol.CodeDeadlineExceeded) {
		return protocol.QueueWaitEnded(id, code, e)
	}
	return protocol.WaitEnded(ctx, id, code, err)
}

func (r *remoteBackend) QueueGet(ctx context.Context, g supervisor.GetRequest) (supervisor.QueueItem, error) {
	if !g.Block {
		ctx = context.Background()
	}
	var res protocol.QueueGetResult
	if err := r.doStream(ctx, protocol.ControlQueueGet, &protocol.QueueGetParams{ID: g.Queue, Block: g.Block, TimeoutNs: timeoutNs(ctx)}, &res); err != nil {
		return supervisor.QueueItem{}, queueWaitEnded(ctx, err, g.Queue, protocol.CodeQueueEmpty)
	}
	if res.Unbound {
		return supervisor.QueueItem{Unbound: true}, nil
	}
	return supervisor.QueueItem{Data: res.Item()}, nil
}

func (r *remoteBackend) DescribeQueues(ctx context.Context) ([]QueueInfo, error) {
	var entries []protocol.QueueEntry
	if err := r.do(ctx, protocol.ControlQueueList, nil, &entries); err != nil {
		return nil, err
	}
	out := make([]QueueInfo, len(entries))
	for i, e := range entries {
		out[i] = QueueInfo{ID: e.ID, MaxSize: e.MaxSize, Size: e.Size, UnboundItems: UnboundMode(e.Unbound), Pinned: e.Pinned > 0, Waiting: e.Waiting}
	}
	return out, nil
}

func (r *remoteBackend) PinQueue(id int64) error {
	return r.do(context.Background(), protocol.ControlQueuePin, &protocol.IDParams{ID: id}, nil)
}

func (r *remoteBackend) UnpinQueue(id int64) error {
	return r.do(context.Background(), protocol.ControlQueueUnpin, &protocol.IDParams{ID: id}, nil)
}
