package worker

import (
	"context"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// outputFlushDelay bounds how long printed bytes wait in the worker before
// they are sent, so a long call's output streams instead of arriving at the
// end, without a frame per print in a tight loop.
const outputFlushDelay = 5 * time.Millisecond

// outputFlushSize sends buffered output at once when it reaches this size.
const outputFlushSize = 32 << 10

// outputChunkSize bounds one message of output.
const outputChunkSize = 1 << 20

type worker struct {
	cfg        protocol.WorkerConfig
	vm         *VM
	mod        *luaModule // the Lua-side interpreters module of vm
	stdlib     bool       // what vm was built with
	configured bool       // cfg is an interpreter's, not a spare's
	peer       *protocol.Peer
	calls      *protocol.CallConn
	current    atomic.Pointer[runningCall]
	// cancelledUpTo is the highest call id cancelled; call ids increase.
	cancelledUpTo atomic.Uint32
	requestID     uint32 // the last request to the supervisor; the VM goroutine's

	busy      sync.Mutex // held by the call in progress; gopher-lua is single-threaded
	callCount atomic.Int64

	outMu     sync.Mutex
	out       []byte
	outTimer  *time.Timer
	outBudget int64 // bytes this call may still write; <0 means unlimited
	// endCall ends the call in progress with a cause; nil between calls.
	// Set and used on the VM goroutine.
	endCall context.CancelCauseFunc
}

func newWorker(cfg protocol.WorkerConfig) *worker {
	w := &worker{outBudget: -1}
	if cfg.Spare {
		// Most interpreters are sandboxed: a spare builds that VM ahead,
		// so claiming it costs one round trip.
		w.newVM(false)
		return w
	}
	w.configure(cfg)
	return w
}

// configure makes the worker the interpreter cfg describes: its limits and
// its VM. A spare worker gets here when a Create claims it, and keeps the
// VM it built unless cfg wants another kind.
func (w *worker) configure(cfg protocol.WorkerConfig) {
	w.cfg = cfg
	applyProcessLimits(cfg)
	if w.vm == nil || w.stdlib != cfg.Stdlib {
		if w.vm != nil {
			w.vm.Close()
		}
		w.newVM(cfg.Stdlib)
	}
	// A spare's VM was built before its interpreter's limits were known:
	// what string.rep and json.encode refuse follows them.
	w.vm.cfg.MemoryLimit = cfg.MemoryLimit
	w.mod.addHostModules(w.vm)
	w.configured = true
}

func (w *worker) newVM(stdlib bool) {
	w.stdlib = stdlib
	m := newLuaModule(w)
	w.vm = NewVM(VMConfig{
		Stdlib:      stdlib,
		Output:      w.write,
		Codec:       m.codec(),
		Modules:     map[string]lua.LGFunction{"interpreters": m.open, "host": m.openHost, "json": m.openJSON},
		MemoryLimit: w.cfg.MemoryLimit,
	})
	m.init(w.vm.L())
	w.mod = m
}

// serve starts the worker's session, for stats and cancellation, and
// takes the call channel, for calls and the Lua module's requests to the
// supervisor, which callLoop serves.
func (w *worker) serve(conn io.ReadWriteCloser, calls *protocol.CallConn) {
	w.calls = calls
	w.peer = protocol.NewPeer(conn, protocol.PeerConfig{
		Handlers: map[string]protocol.Handler{protocol.MethodStats: w.stats},
		OnNotify: func(method string, body []byte) {
			if method != protocol.NotifyCallCancel {
				return
			}
			var id uint32
			if msgpack.Unmarshal(body, &id) == nil {
				w.cancelCall(id)
			}
		},
	})
}

// callLoop serves the call channel until it ends: one call at a time, on
// the goroutine that reads it, so a request reaches the VM without a
// hand-off.
func (w *worker) callLoop() {
	handlers := map[string]protocol.Handler{
		protocol.MethodConfigure:   w.configureRequest,
		protocol.MethodExec:        w.exec,
		protocol.MethodCall:        w.call,
		protocol.MethodPrepareMain: w.prepareMain,
	}
	for {
		m, err := w.calls.Read()
		if err != nil {
			return // the supervisor is gone
		}
		if m.Kind != protocol.KindRequest {
			continue
		}
		h := handlers[m.Method]
		if h == nil {
			_ = w.calls.Respond(m.ID, protocol.Errorf(protocol.CodeProtocol, "unknown call %q", m.Method), nil)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		w.current.Store(&runningCall{id: m.ID, cancel: cancel})
		if m.ID <= w.cancelledUpTo.Load() {
			cancel() // its cancellation overtook it on the session
		}
		res, err := h(ctx, m.Body)
		w.current.Store(nil)
		cancel()
		_ = w.calls.Respond(m.ID, protocol.AsError(err), res)
	}
}

// request asks the supervisor something in the middle of a call, on the
// call channel: the supervisor's goroutine waiting for the call serves it
// and answers before anything else can arrive. It runs on the call loop's
// goroutine, the VM's, like the call it is part of.
func (w *worker) request(method string, params any) ([]byte, error) {
	// What the script printed so far goes first: a nested call's output,
	// or a wait on a queue, then comes after it, as the script wrote it.
	w.flush()
	w.requestID++
	id := w.requestID
	if err := w.calls.Request(id, method, params); err != nil {
		if pe, ok := err.(*protocol.Error); ok {
			return nil, pe // not sent; the channel is intact
		}
		return nil, &protocol.Error{Code: protocol.CodeClosed, Msg: "call channel: " + err.Error()}
	}
	for {
		m, err := w.calls.Read()
		if err != nil {
			return nil, &protocol.Error{Code: protocol.CodeClosed, Msg: "call channel: " + err.Error()}
		}
		if m.Kind == protocol.KindResponse && m.ID == id {
			if m.Error != nil {
				return nil, m.Error
			}
			return m.Body, nil
		}
	}
}

// tell sends the supervisor a request that gets no answer; it serves it
// before anything the worker sends after.
func (w *worker) tell(method string, params any) error {
	if err := w.calls.Notify(method, params); err != nil {
		return &protocol.Error{Code: protocol.CodeClosed, Msg: "call channel: " + err.Error()}
	}
	return nil
}

// runningCall is the call in progress on the call channel.
type runningCall struct {
	id     uint32
	cancel context.CancelFunc
}

// cancelCall cancels call id. The session and the call channel are two
// sockets, so the cancellation can arrive before the call: it is recorded
// first, and the call loop checks the record after publishing the call.
func (w *worker) cancelCall(id uint32) {
	for {
		old := w.cancelledUpTo.Load()
		if id <= old || w.cancelledUpTo.CompareAndSwap(old, id) {
			break
		}
	}
	if c := w.current.Load(); c != nil && c.id == id {
		c.cancel()
	}
}

func (w *worker) configureRequest(_ context.Context, body []byte) (any, error) {
	var cfg protocol.WorkerConfig
	if err := msgpack.Unmarshal(body, &cfg); err != nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "configure params: %v", err)
	}
	w.busy.Lock()
	defer w.busy.Unlock()
	if w.configured {
		return nil, protocol.Errorf(protocol.CodeProtocol, "the worker is configured already")
	}
	cfg.Spare = false
	w.configure(cfg)
	return nil, nil
}

// begin claims the VM for one call and arms its limits. The supervisor
// already refuses a second call, so a busy VM here is a protocol error.
func (w *worker) begin(ctx context.Context, timeoutNs int64) (context.Context, func(), error) {
	if !w.busy.TryLock() {
		return nil, nil, protocol.Errorf(protocol.CodeAlreadyRunning, "interpreter %d already running", w.cfg.InterpreterID)
	}
	if !w.configured {
		w.busy.Unlock()
		return nil, nil, protocol.Errorf(protocol.CodeProtocol, "the worker is a spare not yet configured")
	}
	w.callCount.Add(1)
	w.outMu.Lock()
	w.outBudget = -1
	if w.cfg.OutputLimit > 0 {
		w.outBudget = w.cfg.OutputLimit
	}
	w.outMu.Unlock()
	cancel := context.CancelFunc(func() {})
	if timeoutNs > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(timeoutNs),
			&protocol.Error{Code: protocol.CodeDeadlineExceeded, Msg: "call timed out: " + context.DeadlineExceeded.Error()})
	}
	ctx, cancelLimit := context.WithCancelCause(ctx)
	stopWatch := w.watch(cancelLimit)
	w.endCall = cancelLimit
	return ctx, func() {
		w.endCall = nil
		stopWatch()
		cancelLimit(nil)
		cancel()
		w.flush()
		w.busy.Unlock()
	}, nil
}

func (w *worker) exec(ctx context.Context, body []byte) (any, error) {
	var p protocol.ExecParams
	if err := msgpack.Unmarshal(body, &p); err != nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "exec params: %v", err)
	}
	ctx, end, err := w.begin(ctx, p.TimeoutNs)
	if err != nil {
		return nil, err
	}
	defer end()
	name := p.Name
	if name == "" {
		name = "<string>"
	}
	if err := w.vm.ExecNamed(ctx, name, p.Source); err != nil {
		return nil, err
	}
	return nil, w.overMemoryLimit()
}

func (w *worker) call(ctx context.Context, body []byte) (any, error) {
	var p protocol.CallParams
	if err := msgpack.Unmarshal(body, &p); err != nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "call params: %v", err)
	}
	ctx, end, err := w.begin(ctx, p.TimeoutNs)
	if err != nil {
		return nil, err
	}
	defer end()
	res, err := w.vm.Call(ctx, p.Fn, p.Args)
	if err != nil {
		return nil, err
	}
	if err := w.overMemoryLimit(); err != nil {
		return nil, err
	}
	return msgpack.RawMessage(res), nil
}

func (w *worker) prepareMain(ctx context.Context, body []byte) (any, error) {
	var p protocol.PrepareMainParams
	if err := msgpack.Unmarshal(body, &p); err != nil {
		return nil, protocol.Errorf(protocol.CodeProtocol, "prepare_main params: %v", err)
	}
	_, end, err := w.begin(ctx, 0)
	if err != nil {
		return nil, err
	}
	defer end()
	return nil, w.vm.PrepareMain(p.Names)
}

func (w *worker) stats(context.Context, []byte) (any, error) {
	st := protocol.WorkerStats{Calls: w.callCount.Load(), Goroutines: runtime.NumGoroutine()}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		st.CPUNanos = ru.Utime.Nano() + ru.Stime.Nano()
	}
	st.RSSBytes = residentBytes()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		st.HeapBytes = int64(s[0].Value.Uint64())
	}
	return st, nil
}

// write receives the VM's output on the VM goroutine.
func (w *worker) write(p []byte) error {
	w.outMu.Lock()
	var limitErr error
	if w.outBudget >= 0 {
		if int64(len(p)) > w.outBudget {
			p = p[:w.outBudget]
			limitErr = &protocol.Error{Code: protocol.CodeOutputLimit,
				Msg: "output limit exceeded: the call may write at most " + strconv.FormatInt(w.cfg.OutputLimit, 10) + " bytes"}
		}
		w.outBudget -= int64(len(p))
	}
	if limitErr != nil && w.endCall != nil {
		// Past the limit the call ends, even if a pcall catches the error.
		w.endCall(limitErr)
	}
	w.out = append(w.out, p...)
	full := len(w.out) >= outputFlushSize
	if !full && w.outTimer == nil && len(w.out) > 0 {
		w.outTimer = time.AfterFunc(outputFlushDelay, w.flush)
	}
	w.outMu.Unlock()
	if full {
		w.flush()
	}
	return limitErr
}

// flush sends buffered output. It holds outMu while sending so that chunks
// leave in the order they were written.
func (w *worker) flush() {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	if w.outTimer != nil {
		w.outTimer.Stop()
		w.outTimer = nil
	}
	// On the call channel: the output arrives before the response. In
	// chunks: one print may hold more than a message can.
	for sent := 0; sent < len(w.out); {
		n := min(len(w.out)-sent, outputChunkSize)
		_ = w.calls.Notify(protocol.NotifyOutput, w.out[sent:sent+n])
		sent += n
	}
	w.out = w.out[:0]
	if cap(w.out) > outputChunkSize {
		w.out = nil // a huge print's buffer is not kept for the next one
	}
}

func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
