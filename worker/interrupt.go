package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// interruptCtx is the context Lua code runs under during one call.
//
// Lua polls it before every VM instruction: interruptLoop through stopped,
// gopher-lua's own loop (coroutines resumed from Go, or when the start-up
// checks of interruptLoop fail) through Done, so Done must cost no more than
// a field load; a context.WithCancel pays for a mutex and an atomic on every
// poll. It is closed when the caller's context ends and always when the call
// returns, so coroutines that outlive the call never keep a live context.
//
// AfterFunc lets the context.WithCancel children that gopher-lua makes for
// every coroutine hook onto it without a goroutine each.
type interruptCtx struct {
	parent context.Context
	done   chan struct{}
	unlink func() bool // detaches it from parent

	// stopped is set once done is closed and err set, so a poll that sees
	// it finds both.
	stopped atomic.Bool

	mu    sync.Mutex
	err   error
	next  uint64
	funcs map[uint64]func()
}

func newInterruptCtx(parent context.Context) *interruptCtx {
	return &interruptCtx{parent: parent, done: make(chan struct{})}
}

func (c *interruptCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

func (c *interruptCtx) Done() <-chan struct{} { return c.done }

func (c *interruptCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *interruptCtx) Value(key any) any { return c.parent.Value(key) }

// AfterFunc arranges for f to run once c is done, as context.AfterFunc
// does; the context package uses it when c is the parent of a cancelCtx.
func (c *interruptCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if c.funcs == nil {
		c.funcs = make(map[uint64]func())
	}
	id := c.next
	c.next++
	c.funcs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.funcs[id]
		delete(c.funcs, id)
		return ok
	}
}

// stop ends c with err; only the first call counts.
func (c *interruptCtx) stop(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.done)
	c.stopped.Store(true)
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	// Outside the lock: a child's cancel calls back into Err and stop.
	for _, f := range funcs {
		f()
	}
}

// armInterrupt returns an interrupt context that ends when parent does.
func armInterrupt(parent context.Context) *interruptCtx {
	ic := newInterruptCtx(parent)
	ic.unlink = context.AfterFunc(parent, func() { ic.stop(parent.Err()) })
	return ic
}

// disarm detaches c from its parent and ends it.
func (c *interruptCtx) disarm() {
	c.unlink()
	c.stop(context.Canceled)
}
