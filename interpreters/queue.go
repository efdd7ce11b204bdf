package interpreters

import (
	"context"
	"runtime"
	"weak"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// UnboundMode says what happens to a queue item when the interpreter that
// put it is closed or its worker dies.
type UnboundMode int

// The unbound modes.
const (
	// UnboundReplace: Get returns the Unbound sentinel in the item's place.
	UnboundReplace UnboundMode = UnboundMode(protocol.UnboundReplace)
	// UnboundError: Get fails with ErrItemInterpreterDestroyed, consuming
	// the item.
	UnboundError UnboundMode = UnboundMode(protocol.UnboundError)
	// UnboundRemove: the item is dropped at once.
	UnboundRemove UnboundMode = UnboundMode(protocol.UnboundRemove)
)

// UnboundItem is the type of Unbound.
type UnboundItem struct{}

// Unbound is what Get returns in place of an UnboundReplace item whose
// interpreter is gone. It is comparable: v == interpreters.Unbound.
var Unbound = UnboundItem{}

func (UnboundItem) String() string { return "UNBOUND" }

// QueueOption configures CreateQueue.
type QueueOption interface{ applyQueue(*UnboundMode) }

// PutOption configures one Put.
type PutOption interface{ applyPut(*UnboundMode) }

// UnboundItemsOption sets an unbound mode: on CreateQueue the queue's
// default, on a put that item's.
type UnboundItemsOption UnboundMode

func (o UnboundItemsOption) applyQueue(m *UnboundMode) { *m = UnboundMode(o) }
func (o UnboundItemsOption) applyPut(m *UnboundMode)   { *m = UnboundMode(o) }

// WithUnboundItems sets the unbound mode, for CreateQueue and for Put alike.
func WithUnboundItems(m UnboundMode) UnboundItemsOption { return UnboundItemsOption(m) }

// Queue is a cross-interpreter FIFO queue. It lives in the supervisor and
// holds copies of its items (fallback-tier values); any interpreter it is
// passed to shares it. A runtime has one *Queue per queue ID.
type Queue struct {
	rt      *Runtime
	id      int64
	maxsize int
}

type queueBackend interface {
	CreateQueue(maxsize int, mode protocol.UnboundMode) (int64, error)
	RetainQueue(id int64) error
	ReleaseQueue(id int64)
	Queue(id int64) (supervisor.QueueInfo, error)
	QueuePut(ctx context.Context, p supervisor.PutRequest) error
	QueueGet(ctx context.Context, g supervisor.GetRequest) (supervisor.QueueItem, error)
}

// CreateQueue makes a queue in the runtime. maxsize <= 0 means unbounded
// (and MaxSize reports it as given).
func (rt *Runtime) CreateQueue(maxsize int, opts ...QueueOption) (*Queue, error) {
	mode := UnboundReplace
	for _, o := range opts {
		if o != nil {
			o.applyQueue(&mode)
		}
	}
	if !protocol.UnboundMode(mode).Valid() {
		return nil, errorf(ErrInvalidArgument, "unsupported unbound mode %d", mode)
	}
	b, err := rt.queueBackend()
	if err != nil {
		return nil, err
	}
	id, err := b.CreateQueue(maxsize, protocol.UnboundMode(mode))
	if err != nil {
		return nil, fromWire(err)
	}
	return rt.queueWith(b, id, maxsize, true), nil
}

// LookupQueue returns the runtime's queue with the given ID.
func (rt *Runtime) LookupQueue(id int64) (*Queue, error) {
	b, err := rt.queueBackend()
	if err != nil {
		return nil, err
	}
	info, err := b.Queue(id)
	if err != nil {
		return nil, fromWire(err)
	}
	return rt.queueWith(b, id, info.MaxSize, false), nil
}

// queueWith returns the one *Queue of id. Each handle holds one reference
// on its queue in the backend and drops it when it is garbage collected,
// so a queue lives as long as anything can reach it. adopt says the caller
// already took a reference for it (a queue created or delivered by the
// backend); otherwise one is taken.
func (rt *Runtime) queueWith(b backend, id int64, maxsize int, adopt bool) *Queue {
	rt.mu.Lock()
	if q := rt.queues[id].Value(); q != nil {
		rt.mu.Unlock()
		if adopt {
			b.ReleaseQueue(id) // the live handle already holds one
		}
		return q
	}
	q := &Queue{rt: rt, id: id, maxsize: maxsize}
	rt.queues[id] = weak.Make(q)
	rt.mu.Unlock()
	if !adopt {
		_ = b.RetainQueue(id) // a queue already gone reports itself on use
	}
	runtime.AddCleanup(q, func(id int64) { rt.dropQueue(b, id) }, id)
	return q
}

// dropQueue runs after a handle was garbage collected.
func (rt *Runtime) dropQueue(b backend, id int64) {
	rt.mu.Lock()
	if wp, ok := rt.queues[id]; ok && wp.Value() == nil {
		delete(rt.queues, id)
	}
	rt.mu.Unlock()
	b.ReleaseQueue(id)
}

// queueID is the codec's hook: a *Queue of this runtime crosses as its ID.
func (rt *Runtime) queueID(v any) (int64, bool) {
	q, ok := v.(*Queue)
	if !ok || q == nil || q.rt != rt {
		return 0, false
	}
	return q.id, true
}

// queueHandle is the codec's hook for a queue arriving in a value the
// backend delivered with one reference per queue it carries.
func (rt *Runtime) queueHandle(id int64) any {
	b, err := rt.backend()
	if err != nil {
		return &Queue{rt: rt, id: id}
	}
	rt.mu.Lock()
	q := rt.queues[id].Value()
	rt.mu.Unlock()
	if q != nil {
		b.ReleaseQueue(id)
		return q
	}
	maxsize := 0
	if info, err := b.Queue(id); err == nil {
		maxsize = info.MaxSize
	}
	return rt.queueWith(b, id, maxsize, true)
}

// CreateQueue makes a queue in the default runtime.
func CreateQueue(maxsize int, opts ...QueueOption) (*Queue, error) {
	return Default().CreateQueue(maxsize, opts...)
}

// LookupQueue returns the default runtime's queue with the given ID.
func LookupQueue(id int64) (*Queue, error) { return Default().LookupQueue(id) }

// ID returns the queue's ID.
func (q *Queue) ID() int64 { return q.id }

// MaxSize returns the maximum number of items, as given to CreateQueue;
// <= 0 means unbounded.
func (q *Queue) MaxSize() int { return q.maxsize }

// String returns "Queue(ID)".
func (q *Queue) String() string { return "Queue(" + itoa(q.id) + ")" }

// QSize returns the number of items in the queue.
func (q *Queue) QSize() (int, error) {
	b, err := q.rt.queueBackend()
	if err != nil {
		return 0, err
	}
	info, err := b.Queue(q.id)
	runtime.KeepAlive(q)
	if err != nil {
		return 0, fromWire(err)
	}
	return info.Size, nil
}

// Empty reports whether the queue has no items.
func (q *Queue) Empty() (bool, error) {
	n, err := q.QSize()
	return n == 0, err
}

// Full reports whether the queue is bounded and at its maximum size.
func (q *Queue) Full() (bool, error) {
	n, err := q.QSize()
	return q.maxsize > 0 && n >= q.maxsize, err
}

// Put adds a copy of v, waiting while the queue is full.
func (q *Queue) Put(v any, opts ...PutOption) error {
	return q.put(context.Background(), v, true, opts)
}

// PutContext is Put bounded by ctx: when ctx ends first it fails with
// ErrQueueFull.
func (q *Queue) PutContext(ctx context.Context, v any, opts ...PutOption) error {
	return q.put(ctx, v, true, opts)
}

// PutNowait adds a copy of v, or fails with ErrQueueFull at once.
func (q *Queue) PutNowait(v any, opts ...PutOption) error {
	return q.put(context.Background(), v, false, opts)
}

func (q *Queue) put(ctx context.Context, v any, block bool, opts []PutOption) error {
	var mode UnboundMode
	for _, o := range opts {
		if o != nil {
			o.applyPut(&mode)
		}
	}
	if mode != 0 && !protocol.UnboundMode(mode).Valid() {
		return errorf(ErrInvalidArgument, "unsupported unbound mode %d", mode)
	}
	data, err := q.rt.codec.Marshal(v, protocol.Fallback)
	if err != nil {
		return fromWire(err)
	}
	b, err := q.rt.queueBackend()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		block = false // an expired context still gets one non-blocking try
	}
	err = fromWire(b.QueuePut(ctx, supervisor.PutRequest{Queue: q.id, Item: data, Unbound: protocol.UnboundMode(mode), Block: block}))
	// The handles in v hold their queues until the item holds them, and q
	// holds its own while the put waits: a collected handle would release
	// its queue, which could then be destroyed under the put.
	runtime.KeepAlive(v)
	runtime.KeepAlive(q)
	return err
}

// Get removes and returns the oldest item, waiting while the queue is
// empty.
func (q *Queue) Get() (any, error) { return q.get(context.Background(), true) }

// GetContext is Get bounded by ctx: when ctx ends first it fails with
// ErrQueueEmpty.
func (q *Queue) GetContext(ctx context.Context) (any, error) { return q.get(ctx, true) }

// GetNowait removes and returns the oldest item, or fails with
// ErrQueueEmpty at once.
func (q *Queue) GetNowait() (any, error) { return q.get(context.Background(), false) }

func (q *Queue) get(ctx context.Context, block bool) (any, error) {
	b, err := q.rt.queueBackend()
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		block = false
	}
	item, err := b.QueueGet(ctx, supervisor.GetRequest{Queue: q.id, Block: block})
	runtime.KeepAlive(q) // q holds its queue while the get waits
	if err != nil {
		return nil, fromWire(err)
	}
	if item.Unbound {
		return Unbound, nil
	}
	v, err := q.rt.codec.Unmarshal(item.Data)
	if err != nil {
		return nil, fromWire(err)
	}
	return v, nil
}
