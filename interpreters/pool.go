package interpreters

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// PoolOptions configure a Pool. The zero value is a pool of
// min(32, runtime.NumCPU()+4) workers, started on demand.
type PoolOptions struct {
	MaxWorkers        int           // > 0; 0 means min(32, runtime.NumCPU()+4)
	MinIdle           int           // warm workers kept ready beyond the busy ones
	Initializer       string        // function expression run once in each new worker
	InitArgs          []any         // the Initializer's arguments
	MaxTasksPerWorker int           // recycle a worker after this many tasks; 0: never
	MaxWorkerRSS      int64         // recycle a worker above this resident size in bytes; 0: never
	MaxWorkerAge      time.Duration // recycle a worker older than this; 0: never
}

// Pool runs tasks — calls of Lua functions — on a set of interpreters, the
// way CPython's InterpreterPoolExecutor runs them on subinterpreters. Each
// worker is one interpreter (listed by ListAll while it lives) running one
// task at a time, so globals set by the initializer or by earlier tasks are
// seen by later tasks in the same worker. A worker whose process dies fails
// only the task it was running, and is replaced.
type Pool struct {
	rt   *Runtime
	opts PoolOptions

	mu       sync.Mutex
	pending  []*Future     // submitted, not yet taken, oldest first
	workers  int           // started or starting
	waiting  int           // worker goroutines waiting for a task
	wake     chan struct{} // closed and replaced when pending or shutdown changes
	shutdown bool
	initFail int            // consecutive initializer failures, for the backoff
	retryAt  time.Time      // no worker starts before this, after initializer failures
	retry    *time.Timer    // calls grow at retryAt; nil when none is due
	onNode   map[string]int // workers started or starting per cluster node

	ctx  context.Context // ends initializers when Shutdown cancels pending tasks
	stop context.CancelFunc

	all sync.WaitGroup // worker goroutines and a due retry
}

type poolWorker struct {
	interp  *Interpreter
	node    string // the cluster node it was placed on; "" elsewhere
	started time.Time
	tasks   int
}

// Future is the result of a task submitted to a Pool.
type Future struct {
	fn     string
	args   []any
	done   chan struct{}
	result any
	err    error
	ctx    context.Context // cancelled when the pool cancels the task
	cancel context.CancelFunc
}

// Result waits for the task and returns its value or typed error. When ctx
// ends first it returns ctx's error; the task goes on. A finished task's
// outcome is returned whatever the state of ctx.
func (f *Future) Result(ctx context.Context) (any, error) {
	select {
	case <-f.done:
		return f.result, f.err
	default:
	}
	select {
	case <-f.done:
		return f.result, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the task has finished.
func (f *Future) Done() <-chan struct{} { return f.done }

func (f *Future) finish(result any, err error) {
	f.result, f.err = result, err
	f.cancel()
	close(f.done)
}

// initBackoffCap bounds the wait between attempts to start a worker whose
// initializer keeps failing.
const initBackoffCap = 5 * time.Second

// NewPool starts a pool in the default runtime.
func NewPool(opts PoolOptions) (*Pool, error) { return Default().NewPool(opts) }

// NewPool starts a pool whose workers are interpreters of rt. MinIdle
// workers are started at once.
func (rt *Runtime) NewPool(opts PoolOptions) (*Pool, error) {
	if opts.MaxWorkers < 0 || opts.MinIdle < 0 || opts.MaxTasksPerWorker < 0 || opts.MaxWorkerRSS < 0 || opts.MaxWorkerAge < 0 {
		return nil, errorf(ErrInvalidArgument, "pool options must not be negative")
	}
	if opts.MaxWorkers == 0 {
		opts.MaxWorkers = min(32, runtime.NumCPU()+4)
	}
	if opts.MinIdle > opts.MaxWorkers {
		opts.MinIdle = opts.MaxWorkers
	}
	if opts.InitArgs != nil {
		if _, err := rt.codec.MarshalList(opts.InitArgs, protocol.Fallback); err != nil {
			return nil, fromWire(err)
		}
	}
	if _, err := rt.backend(); err != nil {
		return nil, err
	}
	p := &Pool{rt: rt, opts: opts, wake: make(chan struct{})}
	p.ctx, p.stop = context.WithCancel(context.Background())
	p.mu.Lock()
	p.grow()
	p.mu.Unlock()
	return p, nil
}

// Submit schedules a call of fn with args on a worker.
func (p *Pool) Submit(fn string, args ...any) (*Future, error) {
	p.mu.Lock()
	shutdown := p.shutdown
	p.mu.Unlock()
	if shutdown {
		return nil, errPoolShutdown()
	}
	// Arguments are checked now, so an unshareable one fails here and not
	// in a worker.
	if _, err := p.rt.codec.MarshalList(args, protocol.Fallback); err != nil {
		return nil, fromWire(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Future{fn: fn, args: args, done: make(chan struct{}), ctx: ctx, cancel: cancel}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		cancel()
		return nil, errPoolShutdown()
	}
	p.pending = append(p.pending, f)
	p.signal()
	p.grow()
	return f, nil
}

func errPoolShutdown() error {
	return errorf(ErrPoolShutdown, "cannot submit to a pool that is shut down")
}

// Map submits fn once per item, with the item as its only argument, and
// returns the results in the items' order. At the first error, or when ctx
// ends, it returns that error and cancels the tasks not yet started, as
// CPython's Executor.map does; those already running finish.
func (p *Pool) Map(ctx context.Context, fn string, items []any) ([]any, error) {
	futures := make([]*Future, 0, len(items))
	fail := func(err error) ([]any, error) {
		p.cancelQueued(futures)
		return nil, err
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		f, err := p.Submit(fn, it)
		if err != nil {
			return fail(err)
		}
		futures = append(futures, f)
	}
	results := make([]any, len(items))
	for i, f := range futures {
		v, err := f.Result(ctx)
		if err != nil {
			return fail(err)
		}
		results[i] = v
	}
	return results, nil
}

// cancelQueued fails those of fs that no worker has taken yet with
// context.Canceled.
func (p *Pool) cancelQueued(fs []*Future) {
	drop := make(map[*Future]bool, len(fs))
	for _, f := range fs {
		drop[f] = true
	}
	p.mu.Lock()
	var cancelled []*Future
	kept := p.pending[:0]
	for _, f := range p.pending {
		if drop[f] {
			cancelled = append(cancelled, f)
		} else {
			kept = append(kept, f)
		}
	}
	clear(p.pending[len(kept):])
	p.pending = kept
	p.mu.Unlock()
	for _, f := range cancelled {
		f.finish(nil, context.Canceled)
	}
}

// Shutdown stops the pool taking tasks. With cancelPending, tasks not yet
// started fail with context.Canceled; otherwise they still run. With wait,
// it returns once every task has finished and every worker is closed.
func (p *Pool) Shutdown(wait, cancelPending bool) error {
	p.mu.Lock()
	p.shutdown = true
	var cancelled []*Future
	if cancelPending {
		cancelled, p.pending = p.pending, nil
		p.stop() // an initializer still running has no task left to serve
	}
	if p.retry != nil && len(p.pending) == 0 && p.retry.Stop() {
		p.retry = nil
		p.all.Done()
	}
	p.signal()
	p.mu.Unlock()
	for _, f := range cancelled {
		f.finish(nil, context.Canceled)
	}
	if wait {
		p.all.Wait()
	}
	return nil
}

// signal wakes every worker goroutine; p.mu is held.
func (p *Pool) signal() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// grow starts workers while tasks wait with no worker free for them, and
// until MinIdle are warm. After Shutdown it still replaces workers for the
// tasks left pending (a recycled or crashed worker's), but keeps none warm;
// p.mu is held.
func (p *Pool) grow() {
	short := func() bool {
		return p.workers < p.opts.MaxWorkers &&
			(len(p.pending) > p.waiting || (!p.shutdown && p.waiting < p.opts.MinIdle))
	}
	if !short() {
		return
	}
	if wait := time.Until(p.retryAt); wait > 0 {
		// Initializers have been failing: the next worker starts at
		// retryAt, whoever asks for one meanwhile.
		if p.retry == nil {
			p.all.Add(1)
			p.retry = time.AfterFunc(wait, func() {
				defer p.all.Done()
				p.mu.Lock()
				p.retry = nil
				p.grow()
				p.mu.Unlock()
			})
		}
		return
	}
	for short() {
		p.workers++
		p.waiting++ // it will wait for a task as soon as it is up
		p.all.Add(1)
		go p.run()
	}
}

// run is one worker: it starts an interpreter, then runs tasks in it until
// the pool shuts down, the interpreter is recycled, or its process dies.
func (p *Pool) run() {
	defer p.all.Done()
	p.mu.Lock()
	node := p.spreadNode()
	p.mu.Unlock()
	w, initErr := p.startWorker(node)
	if initErr != nil {
		p.mu.Lock()
		p.leftNode(node)
		p.mu.Unlock()
		p.initFailed(initErr)
		return
	}
	for {
		f := p.take()
		if f == nil {
			break
		}
		if p.expired(w) {
			p.requeue(f) // too old to start another task: a new worker takes it
			break
		}
		v, err := w.interp.CallContext(f.ctx, f.fn, f.args...)
		if errors.Is(err, ErrInterpreterNotFound) {
			// The worker was gone before the task began (its process died
			// while idle): the task did not run, so it goes back to the
			// head of the queue for the next worker.
			p.requeue(f)
			break
		}
		w.tasks++
		f.finish(v, err)
		if err != nil && (!w.alive() || errors.Is(err, ErrMemoryLimit)) {
			// Its process died, or holds more than its memory limit: this
			// task failed, and the next one gets a new worker.
			break
		}
		if p.recycle(w) {
			break
		}
	}
	_ = w.interp.Close()
	p.mu.Lock()
	p.workers--
	p.leftNode(w.node)
	p.initFail = 0
	p.grow()
	p.mu.Unlock()
}

// initFailed ends a worker whose initializer failed. The oldest task
// waiting, if any, fails with the initializer's error, so that a failure
// is reported rather than left to hang every task; the next worker starts
// after a backoff that doubles up to initBackoffCap.
func (p *Pool) initFailed(err error) {
	p.mu.Lock()
	p.workers--
	p.waiting-- // grow counted it as waiting for a task
	var f *Future
	if len(p.pending) > 0 {
		f = p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
	}
	p.initFail++
	p.retryAt = time.Now().Add(initBackoff(p.initFail))
	p.grow()
	p.mu.Unlock()
	if f != nil {
		f.finish(nil, err)
	}
}

// expired reports whether w is past MaxWorkerAge, so starts no more tasks.
func (p *Pool) expired(w *poolWorker) bool {
	return p.opts.MaxWorkerAge > 0 && time.Since(w.started) >= p.opts.MaxWorkerAge
}

func initBackoff(failures int) time.Duration {
	if failures == 0 {
		return 0
	}
	d := 50 * time.Millisecond << min(failures-1, 10)
	return min(d, initBackoffCap)
}

// startWorker creates the worker's interpreter and runs the initializer.
func (p *Pool) startWorker(node string) (*poolWorker, error) {
	interp, err := p.createOn(node)
	if err != nil {
		return nil, err
	}
	w := &poolWorker{interp: interp, node: node, started: time.Now()}
	if p.opts.Initializer != "" {
		if _, err := interp.CallContext(p.ctx, p.opts.Initializer, p.opts.InitArgs...); err != nil {
			_ = interp.Close()
			return nil, err
		}
	}
	return w, nil
}

// alive reports whether the worker's interpreter still exists.
func (w *poolWorker) alive() bool {
	_, err := w.interp.IsRunning()
	return !errors.Is(err, ErrInterpreterNotFound)
}

// requeue puts back a task that was taken but never ran.
func (p *Pool) requeue(f *Future) {
	p.mu.Lock()
	p.pending = append([]*Future{f}, p.pending...)
	p.signal()
	p.mu.Unlock()
}

// take waits for the next task; nil means the worker should stop.
func (p *Pool) take() *Future {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if len(p.pending) > 0 {
			f := p.pending[0]
			p.pending[0] = nil
			p.pending = p.pending[1:]
			p.waiting--
			p.grow() // keep MinIdle warm
			return f
		}
		if p.shutdown {
			p.waiting--
			return nil
		}
		wake := p.wake
		p.mu.Unlock()
		<-wake
		p.mu.Lock()
	}
}

// recycle reports whether w has done its share; a worker that goes on
// waits for its next task again.
func (p *Pool) recycle(w *poolWorker) bool {
	o := p.opts
	done := (o.MaxTasksPerWorker > 0 && w.tasks >= o.MaxTasksPerWorker) ||
		p.expired(w) ||
		(o.MaxWorkerRSS > 0 && p.rt.rss(w.interp.id) > o.MaxWorkerRSS)
	if !done {
		p.mu.Lock()
		p.waiting++
		p.mu.Unlock()
	}
	return done
}

// rss is the resident size of interpreter id's worker, or 0 when the
// backend cannot tell.
func (rt *Runtime) rss(id int64) int64 {
	b, err := rt.backend()
	if err != nil {
		return 0
	}
	s, ok := b.(interface {
		Stats(context.Context, int64) (protocol.WorkerStats, error)
	})
	if !ok {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := s.Stats(ctx, id)
	if err != nil {
		return 0
	}
	return st.RSSBytes
}
