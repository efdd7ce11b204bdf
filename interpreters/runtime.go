package interpreters

import (
	"context"
	"sync"
	"weak"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// backend is what a Runtime drives: a local supervisor (localBackend), or
// a daemon across a connection (remoteBackend). Values cross it as msgpack;
// errors as *protocol.Error. Every method that a lost connection can fail
// returns an error.
type backend interface {
	Create(ctx context.Context, opts supervisor.CreateOptions) (int64, error)
	Exec(ctx context.Context, id int64, name, src string) error
	Call(ctx context.Context, id int64, fn string, args []byte) ([]byte, error)
	PrepareMain(ctx context.Context, id int64, names []byte) error
	CloseInterpreter(id int64) error
	IsRunning(id int64) (bool, error)
	Pid(id int64) (int, error)
	Exists(id int64) (bool, error)
	List(ctx context.Context) ([]supervisor.Info, error)
	Describe(ctx context.Context) ([]InterpreterInfo, error)
	Close() error
	queueBackend
	DescribeQueues(ctx context.Context) ([]QueueInfo, error)
	PinQueue(id int64) error
	UnpinQueue(id int64) error
}

// Runtime is a set of interpreters with one main interpreter (the host)
// and one supervisor or daemon behind them. Its methods are safe for
// concurrent use.
type Runtime struct {
	opts options

	startOnce sync.Once
	b         backend
	startErr  error
	newB      func() (backend, error)

	codec *protocol.Codec
	main  *Interpreter

	wrapOnce sync.Once
	wrapped  map[string]supervisor.HostFunc // the runtime's own host functions, as the backend takes them

	mu      sync.Mutex
	interps map[int64]*Interpreter
	queues  map[int64]weak.Pointer[Queue]
	closed  bool
}

// New returns a local Runtime with its own supervisor. opts set the
// defaults of every interpreter it creates. Nothing starts until the first
// Create; a problem starting the supervisor is returned by that call.
func New(opts ...Option) *Runtime {
	o := collect(options{}, opts)
	o.fail(o.misplaced(onNew)) // Create reports it, as it does an invalid option
	return newRuntime(o, func() (backend, error) {
		sup, err := supervisor.New(supervisor.Config{Stdout: hostStdout{}, Defaults: o.limits, WarmSpares: o.spares})
		if err != nil {
			return nil, err
		}
		return newLocalBackend(sup), nil
	})
}

func newRuntime(o options, newB func() (backend, error)) *Runtime {
	rt := &Runtime{opts: o, newB: newB, interps: make(map[int64]*Interpreter), queues: make(map[int64]weak.Pointer[Queue])}
	rt.main = &Interpreter{rt: rt, id: 0}
	rt.codec = &protocol.Codec{QueueID: rt.queueID, Queue: rt.queueHandle}
	return rt
}

func (rt *Runtime) backend() (backend, error) {
	rt.startOnce.Do(func() { rt.b, rt.startErr = rt.newB() })
	if rt.startErr == errRuntimeClosed {
		return nil, errRuntimeClosed
	}
	if rt.startErr != nil {
		return nil, &opError{msg: "interpreter runtime failed to start: " + rt.startErr.Error(), kind: ErrInterpreter, cause: rt.startErr}
	}
	rt.mu.Lock()
	closed := rt.closed
	rt.mu.Unlock()
	if closed {
		return nil, errRuntimeClosed
	}
	return rt.b, nil
}

// errRuntimeClosed: a closed runtime's interpreters are gone.
var errRuntimeClosed = &opError{msg: "the runtime is closed", kind: ErrInterpreterNotFound}

// queueBackend is backend for queue operations, whose queues are gone too
// once the runtime is closed.
func (rt *Runtime) queueBackend() (backend, error) {
	b, err := rt.backend()
	if err == errRuntimeClosed {
		return nil, &opError{msg: "the runtime is closed", kind: ErrQueueNotFound}
	}
	return b, err
}

// Create starts a new interpreter in its own worker process.
func (rt *Runtime) Create(opts ...Option) (*Interpreter, error) {
	return rt.CreateContext(context.Background(), opts...)
}

// CreateContext is Create with a context bounding the worker's start.
func (rt *Runtime) CreateContext(ctx context.Context, opts ...Option) (*Interpreter, error) {
	b, err := rt.backend()
	if err != nil {
		return nil, err
	}
	o := collect(rt.opts, opts)
	o.fail(o.misplaced(onCreate))
	if o.err != nil {
		return nil, o.err
	}
	copts := supervisor.CreateOptions{Stdout: o.stdout, Stdlib: o.stdlib, Limits: o.limits, Restart: o.restart, Hosting: rt.hosting(o)}
	var id int64
	if cb, ok := b.(*clusterBackend); ok {
		id, err = cb.create(ctx, copts, o.node, o.placementKey)
	} else if o.node != "" {
		return nil, errNoNode(o.node)
	} else {
		id, err = b.Create(ctx, copts)
	}
	if err != nil {
		return nil, fromWire(err)
	}
	return rt.handle(id), nil
}

// handle returns the one *Interpreter of id.
func (rt *Runtime) handle(id int64) *Interpreter {
	if id == 0 {
		return rt.main
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	it := rt.interps[id]
	if it == nil {
		it = &Interpreter{rt: rt, id: id}
		rt.interps[id] = it
	}
	return it
}

// forget drops a closed interpreter's handle, so a long-lived runtime does
// not grow; IDs are never reused, so no later lookup can want it.
func (rt *Runtime) forget(id int64) {
	rt.mu.Lock()
	delete(rt.interps, id)
	rt.mu.Unlock()
}

// ListAll returns the main interpreter and every live interpreter, oldest
// first.
func (rt *Runtime) ListAll() ([]*Interpreter, error) {
	b, err := rt.backend()
	if err != nil {
		return nil, err
	}
	infos, err := b.List(context.Background())
	if err != nil {
		return nil, fromWire(err)
	}
	all := make([]*Interpreter, 0, len(infos)+1)
	all = append(all, rt.main)
	for _, in := range infos {
		all = append(all, rt.handle(in.ID))
	}
	return all, nil
}

// GetMain returns the main interpreter: the host, ID 0.
func (rt *Runtime) GetMain() *Interpreter { return rt.main }

// GetCurrent returns the interpreter the caller runs in; in the host, the
// main interpreter.
func (rt *Runtime) GetCurrent() *Interpreter { return rt.main }

// Lookup returns the interpreter with the given ID.
func (rt *Runtime) Lookup(id int64) (*Interpreter, error) {
	if id < 0 {
		return nil, errorf(ErrInvalidArgument, "interpreter ID must be a non-negative int, got %d", id)
	}
	if id == 0 {
		return rt.main, nil
	}
	b, err := rt.backend()
	if err != nil {
		return nil, err
	}
	ok, err := b.Exists(id)
	if err != nil {
		return nil, fromWire(err)
	}
	if !ok {
		rt.forget(id)
		return nil, errorf(ErrInterpreterNotFound, "unrecognized interpreter ID %d", id)
	}
	return rt.handle(id), nil
}

// Close closes every interpreter of a local runtime and reaps their
// workers. On a runtime from Dial it ends the connection instead: the
// daemon's interpreters live on, and the queue references the connection
// held are released. Later calls fail.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	rt.closed = true
	rt.interps = make(map[int64]*Interpreter)
	rt.queues = make(map[int64]weak.Pointer[Queue])
	rt.mu.Unlock()
	// A runtime closed before its first use never starts a supervisor.
	rt.startOnce.Do(func() { rt.startErr = errRuntimeClosed })
	if rt.b != nil {
		return rt.b.Close()
	}
	return nil
}

// IsShareable reports whether v belongs to the strict tier: whether it can
// be bound by PrepareMain.
func (rt *Runtime) IsShareable(v any) bool {
	return rt.codec.Check(v, protocol.Strict) == nil
}

var (
	defaultMu sync.Mutex
	defaultRT *Runtime
)

// Default returns the runtime behind the package-level functions, starting
// it on first use.
func Default() *Runtime {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultRT == nil {
		defaultRT = New()
	}
	return defaultRT
}

// Create starts a new interpreter in the default runtime.
func Create(opts ...Option) (*Interpreter, error) { return Default().Create(opts...) }

// ListAll lists the default runtime's interpreters: main first, then oldest
// to newest.
func ListAll() ([]*Interpreter, error) { return Default().ListAll() }

// GetMain returns the main interpreter of the default runtime.
func GetMain() *Interpreter { return Default().GetMain() }

// GetCurrent returns the interpreter the caller runs in: in the host, the
// main interpreter.
func GetCurrent() *Interpreter { return Default().GetCurrent() }

// Lookup returns the default runtime's interpreter with the given ID.
func Lookup(id int64) (*Interpreter, error) { return Default().Lookup(id) }

// IsShareable reports whether v belongs to the strict tier.
func IsShareable(v any) bool { return Default().IsShareable(v) }

// Shutdown closes every interpreter of the default runtime. The next
// package-level call starts a fresh default runtime.
func Shutdown() error {
	defaultMu.Lock()
	rt := defaultRT
	defaultRT = nil
	defaultMu.Unlock()
	if rt == nil {
		return nil
	}
	return rt.Close()
}
