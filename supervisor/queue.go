package supervisor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/subinterp/subinterp/protocol"
)

// queue is a cross-interpreter FIFO. Items are msgpack values, copied in by
// whoever put them; each remembers the interpreter that put it (0 for the
// host) so that interpreter's end can unbind it.
//
// Its own lock, mu, guards the items, the parked gets and the waiters. What
// reaches the queue (host handles, holders, items of other queues) is the
// queueSet's to count, under the set's lock; lock order is the set's, then
// the queue's.
type queue struct {
	id      int64
	maxsize int // <= 0: unbounded
	unbound protocol.UnboundMode

	// What reaches the queue; guarded by queueSet.mu.
	hostRefs int
	holders  map[int64]struct{}
	itemRefs int

	mu        sync.Mutex
	items     []qitem
	destroyed bool
	changed   chan struct{} // closed and replaced on every change: wakes blocked getters and putters
	parked    []*parkedGet  // workers' gets waiting while items is empty, oldest first
	waiting   int           // gets and puts blocked on the queue now
}

// parkedGet is a worker's blocked get. The next put answers it itself,
// writing the item to the worker, so the item does not wait for the
// goroutine serving the get to be woken and scheduled first.
type parkedGet struct {
	by     int64
	ctx    context.Context        // the get's: a put never answers a get whose context has ended
	answer func(data []byte) bool // writes the item to the worker; false when it could not
	taken  atomic.Bool            // claimed, by a put or by the get giving up
	done   chan struct{}          // closed once a put has answered
}

type qitem struct {
	data     []byte
	refs     []int64 // the queues the item carries
	from     int64
	mode     protocol.UnboundMode
	orphaned bool // its interpreter is gone
}

// QueueItem is one item taken from a queue.
type QueueItem struct {
	// Data is the item's msgpack value; nil when Unbound.
	Data []byte
	// Unbound is true for an UnboundReplace item whose interpreter is gone.
	Unbound bool
	// Settle, when a QueueStore sets it, finishes the get: the item stays
	// the store's until Settle(true) says it has reached its getter, and
	// Settle(false) gives it to the next getter. The supervisor calls it,
	// or leaves it to a caller that asked (GetRequest.Settles); nil when
	// there is nothing to settle.
	Settle func(handed bool)
}

// QueueInfo describes a queue.
type QueueInfo struct {
	ID      int64
	MaxSize int
	Unbound protocol.UnboundMode
	Size    int
	Waiting int // gets and puts blocked on it now
}

// PutRequest is one put into a queue.
type PutRequest struct {
	Queue int64
	Item  []byte // the item's msgpack value
	// From is the interpreter that puts it; 0 is the host.
	From int64
	// Unbound is what becomes of the item when From ends; 0 means the
	// queue's default.
	Unbound protocol.UnboundMode
	// Block waits while the queue is full, until the context ends;
	// without it a full queue fails at once.
	Block bool
}

// GetRequest is one get from a queue.
type GetRequest struct {
	Queue int64
	// Block waits while the queue is empty, until the context ends;
	// without it an empty queue fails at once.
	Block bool
	// Settles says the caller hands the item on (a daemon, to its
	// client) and calls the item's Settle, if it has one, once it has or
	// could not: an item of a QueueStore leaves the store only then.
	// Without it the item is settled before QueueGet returns.
	Settles bool

	by     int64                  // the interpreter that gets; 0 is the host
	answer func(data []byte) bool // set for a worker's get, which parks (see parkedGet)
}

func queueNotFound(id int64) *protocol.Error {
	return protocol.Errorf(protocol.CodeQueueNotFound, "queue %d not found", id)
}

// errAnswered reports that a put has answered a parked get itself.
var errAnswered = errors.New("supervisor: answered by a put")

func (q *queue) info() QueueInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueInfo{ID: q.id, MaxSize: q.maxsize, Unbound: q.unbound, Size: len(q.items), Waiting: q.waiting}
}

// signal wakes every waiter; q.mu is held.
func (q *queue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// stopWaiting counts a blocked get or put as no longer waiting.
func (q *queue) stopWaiting() {
	q.mu.Lock()
	q.waiting--
	q.mu.Unlock()
}

// claimParked takes the oldest parked get still waiting, for a put to
// answer directly; none while an item waits in q, which the answer would
// overtake. A get whose context has ended is left to give up on its own:
// its worker's call is over, and an item written to it would be lost.
// q.mu is held.
func (q *queue) claimParked() *parkedGet {
	if len(q.items) > 0 {
		return nil
	}
	for i, pg := range q.parked {
		if protocol.Ended(pg.ctx) != nil {
			continue
		}
		if pg.taken.CompareAndSwap(false, true) {
			q.parked = slices.Delete(q.parked, i, i+1)
			return pg
		}
	}
	return nil
}

// unparkGet claims pg back for its get, which stops waiting; false when a
// put has claimed it first and is answering it. A nil pg was never parked.
func (q *queue) unparkGet(pg *parkedGet) bool {
	if pg == nil {
		return true
	}
	if !pg.taken.CompareAndSwap(false, true) {
		return false
	}
	q.mu.Lock()
	for i, p := range q.parked {
		if p == pg {
			q.parked = slices.Delete(q.parked, i, i+1)
			break
		}
	}
	q.mu.Unlock()
	return true
}

// unbind applies each item's unbound mode to those interpreter from put:
// it has just ended. It returns the queues the removed items carried.
func (q *queue) unbind(from int64) (removed []int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.items[:0]
	changed := false
	for _, it := range q.items {
		switch {
		case it.from != from:
			kept = append(kept, it)
		case it.mode == protocol.UnboundRemove:
			removed = append(removed, it.refs...)
			changed = true
		default:
			it.orphaned = true
			kept = append(kept, it)
			changed = true
		}
	}
	clear(q.items[len(kept):])
	q.items = kept
	if changed {
		q.signal()
	}
	return removed
}

// destroy empties q for good and wakes its waiters, which find it gone;
// it returns the items it held.
func (q *queue) destroy() []qitem {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	q.destroyed = true
	q.signal()
	return items
}

// put appends p's item, or hands it straight to a parked get. refs are the
// queues the item carries, counted by the set; whatever does not keep the
// item releases them through set.
func (q *queue) put(ctx context.Context, set *queueSet, p PutRequest, refs []int64) error {
	mode := p.Unbound
	for {
		q.mu.Lock()
		if q.destroyed {
			q.mu.Unlock()
			set.releaseRefs(refs)
			return queueNotFound(q.id)
		}
		if mode == 0 {
			mode = q.unbound
		}
		// A put from an interpreter that has ended (a notification or a
		// blocked put still in flight when it died) comes after its items
		// were unbound: it follows its unbound mode itself. Checked under
		// q.mu, so an end racing with it unbinds the item once it is in.
		if p.From != 0 && !set.lives(p.From) {
			if mode == protocol.UnboundRemove {
				q.mu.Unlock()
				set.releaseRefs(refs)
				return nil
			}
			q.items = append(q.items, qitem{data: p.Item, refs: refs, from: p.From, mode: mode, orphaned: true})
			q.signal()
			q.mu.Unlock()
			return nil
		}
		// Straight to a waiting get, when no item is ahead of this one.
		if pg := q.claimParked(); pg != nil {
			q.mu.Unlock()
			set.deliver(pg.by, p.Item)
			ok := pg.answer(p.Item)
			close(pg.done)
			if ok {
				set.releaseRefs(refs)
				return nil
			}
			// Its worker is gone: the item goes first in line instead.
			q.mu.Lock()
			q.items = append([]qitem{{data: p.Item, refs: refs, from: p.From, mode: mode}}, q.items...)
			q.signal()
			q.mu.Unlock()
			return nil
		}
		if q.maxsize <= 0 || len(q.items) < q.maxsize {
			q.items = append(q.items, qitem{data: p.Item, refs: refs, from: p.From, mode: mode})
			q.signal()
			q.mu.Unlock()
			return nil
		}
		wait := q.changed
		if !p.Block {
			q.mu.Unlock()
			set.releaseRefs(refs)
			return protocol.Errorf(protocol.CodeQueueFull, "queue %d is full", q.id)
		}
		q.waiting++
		q.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
		}
		q.stopWaiting()
		// Room and the end of ctx can come together: a putter that gave
		// up (or whose worker died) must not put after all.
		if protocol.Ended(ctx) == nil {
			continue
		}
		set.releaseRefs(refs)
		return protocol.QueueWaitEnded(q.id, protocol.CodeQueueFull, protocol.Ended(ctx))
	}
}

// get takes the oldest item for g. A worker's get (g.answer set) that must
// wait parks on the queue, and the put that ends the wait answers it
// through answer; get then returns errAnswered.
func (q *queue) get(ctx context.Context, set *queueSet, g GetRequest) (QueueItem, error) {
	for {
		q.mu.Lock()
		if q.destroyed {
			q.mu.Unlock()
			return QueueItem{}, queueNotFound(q.id)
		}
		if len(q.items) > 0 {
			it := q.items[0]
			q.items[0] = qitem{}
			q.items = q.items[1:]
			q.signal()
			q.mu.Unlock()
			if !it.orphaned {
				set.deliver(g.by, it.data) // before the item lets go of them
			}
			set.releaseRefs(it.refs)
			switch {
			case !it.orphaned:
				return QueueItem{Data: it.data}, nil
			case it.mode == protocol.UnboundError:
				return QueueItem{}, protocol.Errorf(protocol.CodeItemDestroyed, "item's interpreter %d was destroyed", it.from)
			}
			return QueueItem{Unbound: true}, nil
		}
		wait := q.changed
		if !g.Block {
			q.mu.Unlock()
			return QueueItem{}, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", q.id)
		}
		var pg *parkedGet
		var answered chan struct{} // nil unless parked: a nil channel never receives
		if g.answer != nil {
			pg = &parkedGet{by: g.by, ctx: ctx, answer: g.answer, done: make(chan struct{})}
			q.parked = append(q.parked, pg)
			answered = pg.done
		}
		q.waiting++
		q.mu.Unlock()
		select {
		case <-answered:
		case <-wait:
		case <-ctx.Done():
		}
		q.stopWaiting()
		select {
		case <-answered:
			return QueueItem{}, errAnswered
		case <-wait:
			// An item and the end of ctx can come together: a getter that
			// gave up (or whose worker died) leaves the item to the living.
			if !q.unparkGet(pg) {
				<-pg.done
				return QueueItem{}, errAnswered
			}
			if protocol.Ended(ctx) == nil {
				continue
			}
		case <-ctx.Done():
			if !q.unparkGet(pg) {
				<-pg.done
				return QueueItem{}, errAnswered
			}
		}
		return QueueItem{}, protocol.QueueWaitEnded(q.id, protocol.CodeQueueEmpty, protocol.Ended(ctx))
	}
}
