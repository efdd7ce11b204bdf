package supervisor

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/subinterp/subinterp/protocol"
)

// queue is a cross-interpreter FIFO. Items are msgpack values, copied in by
// whoever put them; each remembers the interpreter that put it (0 for the
// host) so that interpreter's end can unbind it.
//
// A queue lives while anything can still reach it: a host handle
// (RetainQueue), an interpreter it was handed to (held until that
// interpreter ends), or an item of another live queue. When the last of
// these goes, the queue and its items are destroyed. The counts are guarded
// by queues.mu; lock order is queues.mu, then queue.mu.
type queue struct {
	id      int64
	maxsize int // <= 0: unbounded
	unbound protocol.UnboundMode

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
}

// QueueInfo describes a queue.
type QueueInfo struct {
	ID      int64
	MaxSize int
	Unbound protocol.UnboundMode
	Size    int
	Waiting int // gets and puts blocked on it now
}

type queues struct {
	mu     sync.Mutex
	nextID int64
	byID   map[int64]*queue
}

func queueNotFound(id int64) *protocol.Error {
	return protocol.Errorf(protocol.CodeQueueNotFound, "queue %d not found", id)
}

// CreateQueue makes a queue, retained once for the host: release it with
// ReleaseQueue when the host's handle goes. maxsize <= 0 means unbounded
// and is kept as given; mode is the default unbound mode of its items.
func (s *Supervisor) CreateQueue(maxsize int, mode protocol.UnboundMode) (int64, error) {
	return s.createQueue(maxsize, mode, 0)
}

// createQueue makes a queue held by interpreter by, or retained for the
// host when by is 0.
func (s *Supervisor) createQueue(maxsize int, mode protocol.UnboundMode, by int64) (int64, error) {
	if mode == 0 {
		mode = protocol.UnboundReplace
	}
	if !mode.Valid() {
		return 0, protocol.Errorf(protocol.CodeInvalidArgument, "unsupported unbound mode %d", mode)
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return 0, protocol.Errorf(protocol.CodeQueueNotFound, "the supervisor is closed")
	}
	var id int64
	if s.cfg.NextID != nil {
		// Queue and interpreter IDs come from the one source, so a
		// cluster can tell by ID alone which node holds a queue.
		var err error
		if id, err = s.cfg.NextID(context.Background()); err != nil {
			return 0, protocol.Errorf(protocol.CodeInterpreter, "queue creation failed: no ID: %v", err)
		}
	}
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	if s.qs.byID == nil {
		s.qs.byID = make(map[int64]*queue)
	}
	if id == 0 {
		s.qs.nextID++
		id = s.qs.nextID
	}
	q := &queue{id: id, maxsize: maxsize, unbound: mode, changed: make(chan struct{}), holders: map[int64]struct{}{}}
	if by == 0 {
		q.hostRefs = 1
	} else {
		q.holders[by] = struct{}{}
	}
	s.qs.byID[q.id] = q
	return q.id, nil
}

// RetainQueue counts one more host handle on queue id.
func (s *Supervisor) RetainQueue(id int64) error {
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	q := s.qs.byID[id]
	if q == nil {
		return queueNotFound(id)
	}
	q.hostRefs++
	return nil
}

// ReleaseQueue drops one host handle on queue id; the queue is destroyed
// when nothing else reaches it.
func (s *Supervisor) ReleaseQueue(id int64) {
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	q := s.qs.byID[id]
	if q != nil && q.hostRefs > 0 {
		q.hostRefs--
	}
	s.collect(q)
}

// holdQueues records that interpreter by received the queues inside the
// msgpack value b: it can reach them until it ends.
func (s *Supervisor) holdQueues(by int64, b []byte) {
	ids := protocol.QueueIDs(b)
	if len(ids) == 0 {
		return
	}
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	if !s.interpLives(by) {
		return
	}
	for _, id := range ids {
		if q := s.qs.byID[id]; q != nil {
			q.holders[by] = struct{}{}
		}
	}
}

// holdQueue records that interpreter by reached queue id by its ID.
func (s *Supervisor) holdQueue(by, id int64) {
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	if q := s.qs.byID[id]; q != nil && s.interpLives(by) {
		q.holders[by] = struct{}{}
	}
}

// interpLives reports whether interpreter id has not ended yet. Checked
// under a lock its end also takes next (queues.mu before a hold, a queue's
// mu before a put), so what it lets through is undone by that end: a hold
// released by releaseHolder, an item unbound by unbindItems.
func (s *Supervisor) interpLives(id int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.interps[id]
	return ok
}

// releaseHolder drops every hold of interpreter by, which has ended.
func (s *Supervisor) releaseHolder(by int64) {
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	for _, q := range s.qs.byID {
		if _, ok := q.holders[by]; ok {
			delete(q.holders, by)
			s.collect(q)
		}
	}
}

// collect destroys q if nothing reaches it any more, and with it whatever
// only its items reached. queues.mu is held.
func (s *Supervisor) collect(q *queue) {
	if q == nil || q.hostRefs > 0 || len(q.holders) > 0 || q.itemRefs > 0 || s.qs.byID[q.id] != q {
		return
	}
	delete(s.qs.byID, q.id)
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.destroyed = true
	q.signal()
	q.mu.Unlock()
	for _, it := range items {
		s.dropRefs(it.refs)
	}
}

// itemRefs counts the queues inside an item about to be put.
func (s *Supervisor) itemRefs(data []byte) []int64 {
	ids := protocol.QueueIDs(data)
	if len(ids) == 0 {
		return nil
	}
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	for _, id := range ids {
		if r := s.qs.byID[id]; r != nil {
			r.itemRefs++
		}
	}
	return ids
}

// dropRefs releases the queues an item carried. queues.mu is held.
func (s *Supervisor) dropRefs(refs []int64) {
	for _, id := range refs {
		if r := s.qs.byID[id]; r != nil {
			r.itemRefs--
			s.collect(r)
		}
	}
}

// releaseRefs releases the queues carried by an item that left its queue
// or never entered it. queues.mu is not held.
func (s *Supervisor) releaseRefs(refs []int64) {
	if len(refs) == 0 {
		return
	}
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	s.dropRefs(refs)
}

func (s *Supervisor) queue(id int64) (*queue, error) {
	if id < 0 {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "queue ID must be a non-negative int, got %d", id)
	}
	s.qs.mu.Lock()
	q := s.qs.byID[id]
	s.qs.mu.Unlock()
	if q == nil {
		return nil, queueNotFound(id)
	}
	return q, nil
}

func (q *queue) info() QueueInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueInfo{ID: q.id, MaxSize: q.maxsize, Unbound: q.unbound, Size: len(q.items), Waiting: q.waiting}
}

// Queue describes queue id.
func (s *Supervisor) Queue(id int64) (QueueInfo, error) {
	q, err := s.queue(id)
	if err != nil {
		return QueueInfo{}, err
	}
	return q.info(), nil
}

// Queues describes every queue, by ID.
func (s *Supervisor) Queues() []QueueInfo {
	s.qs.mu.Lock()
	all := make([]*queue, 0, len(s.qs.byID))
	for _, q := range s.qs.byID {
		all = append(all, q)
	}
	s.qs.mu.Unlock()
	infos := make([]QueueInfo, 0, len(all))
	for _, q := range all {
		infos = append(infos, q.info())
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos
}

// signal wakes every waiter; q.mu is held.
func (q *queue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// QueuePut appends data, put by interpreter from (0: the host). With block
// it waits while the queue is full until ctx ends, then fails with
// CodeQueueFull, as it does at once without block.
func (s *Supervisor) QueuePut(ctx context.Context, id int64, data []byte, from int64, mode protocol.UnboundMode, block bool) error {
	if mode != 0 && !mode.Valid() {
		return protocol.Errorf(protocol.CodeInvalidArgument, "unsupported unbound mode %d", mode)
	}
	q, err := s.queue(id)
	if err != nil {
		return err
	}
	refs := s.itemRefs(data)
	for {
		q.mu.Lock()
		if q.destroyed {
			q.mu.Unlock()
			s.releaseRefs(refs)
			return queueNotFound(id)
		}
		if mode == 0 {
			mode = q.unbound
		}
		// A put from an interpreter that has ended (a notification or a
		// blocked put still in flight when it died) comes after its items
		// were unbound: it follows its unbound mode itself. Checked under
		// q.mu, so an end racing with it unbinds the item once it is in.
		if from != 0 && !s.interpLives(from) {
			if mode == protocol.UnboundRemove {
				q.mu.Unlock()
				s.releaseRefs(refs)
				return nil
			}
			q.items = append(q.items, qitem{data: data, refs: refs, from: from, mode: mode, orphaned: true})
			q.signal()
			q.mu.Unlock()
			return nil
		}
		// Straight to a waiting get, when no item is ahead of this one.
		if pg := q.claimParked(); pg != nil {
			q.mu.Unlock()
			s.deliver(pg.by, data)
			ok := pg.answer(data)
			close(pg.done)
			if ok {
				s.releaseRefs(refs)
				return nil
			}
			// Its worker is gone: the item goes first in line instead.
			q.mu.Lock()
			q.items = append([]qitem{{data: data, refs: refs, from: from, mode: mode}}, q.items...)
			q.signal()
			q.mu.Unlock()
			return nil
		}
		if q.maxsize <= 0 || len(q.items) < q.maxsize {
			q.items = append(q.items, qitem{data: data, refs: refs, from: from, mode: mode})
			q.signal()
			q.mu.Unlock()
			return nil
		}
		wait := q.changed
		if !block {
			q.mu.Unlock()
			s.releaseRefs(refs)
			return protocol.Errorf(protocol.CodeQueueFull, "queue %d is full", id)
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
		if ctx.Err() == nil {
			continue
		}
		s.releaseRefs(refs)
		return protocol.QueueWaitEnded(id, protocol.CodeQueueFull, ctx.Err())
	}
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
		if pg.ctx.Err() != nil {
			continue
		}
		if pg.taken.CompareAndSwap(false, true) {
			q.parked = slices.Delete(q.parked, i, i+1)
			return pg
		}
	}
	return nil
}

// unpark removes pg, which its get has claimed back. q.mu is held.
func (q *queue) unpark(pg *parkedGet) {
	for i, p := range q.parked {
		if p == pg {
			q.parked = slices.Delete(q.parked, i, i+1)
			return
		}
	}
}

// QueueGet removes and returns the oldest item. With block it waits while
// the queue is empty until ctx ends, then fails with CodeQueueEmpty, as it
// does at once without block. The queues inside the item are retained once
// each for the host (see Deliver).
func (s *Supervisor) QueueGet(ctx context.Context, id int64, block bool) (QueueItem, error) {
	return s.queueGet(ctx, id, block, 0, nil)
}

// deliver hands the queues inside the msgpack value b to their receiver:
// an interpreter holds them until it ends; the host gets one retain per
// occurrence, which its handles adopt or release.
func (s *Supervisor) deliver(to int64, b []byte) {
	if to != 0 {
		s.holdQueues(to, b)
		return
	}
	ids := protocol.QueueIDs(b)
	if len(ids) == 0 {
		return
	}
	s.qs.mu.Lock()
	defer s.qs.mu.Unlock()
	for _, id := range ids {
		if q := s.qs.byID[id]; q != nil {
			q.hostRefs++
		}
	}
}

// queueGet is QueueGet for interpreter by (0: the host). A worker's get
// (answer set) that must wait parks on the queue, and the put that ends the
// wait answers it through answer; queueGet then returns errAnswered.
func (s *Supervisor) queueGet(ctx context.Context, id int64, block bool, by int64, answer func([]byte) bool) (QueueItem, error) {
	q, err := s.queue(id)
	if err != nil {
		return QueueItem{}, err
	}
	for {
		q.mu.Lock()
		if q.destroyed {
			q.mu.Unlock()
			return QueueItem{}, queueNotFound(id)
		}
		if len(q.items) > 0 {
			it := q.items[0]
			q.items[0] = qitem{}
			q.items = q.items[1:]
			q.signal()
			q.mu.Unlock()
			if !it.orphaned {
				s.deliver(by, it.data) // before the item lets go of them
			}
			s.releaseRefs(it.refs)
			switch {
			case !it.orphaned:
				return QueueItem{Data: it.data}, nil
			case it.mode == protocol.UnboundError:
				return QueueItem{}, protocol.Errorf(protocol.CodeItemDestroyed, "item's interpreter %d was destroyed", it.from)
			}
			return QueueItem{Unbound: true}, nil
		}
		wait := q.changed
		if !block {
			q.mu.Unlock()
			return QueueItem{}, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", id)
		}
		var pg *parkedGet
		var answered chan struct{} // nil unless parked: a nil channel never receives
		if answer != nil {
			pg = &parkedGet{by: by, ctx: ctx, answer: answer, done: make(chan struct{})}
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
			if !s.unparkGet(q, pg) {
				<-pg.done
				return QueueItem{}, errAnswered
			}
			if ctx.Err() == nil {
				continue
			}
		case <-ctx.Done():
			if !s.unparkGet(q, pg) {
				<-pg.done
				return QueueItem{}, errAnswered
			}
		}
		return QueueItem{}, protocol.QueueWaitEnded(id, protocol.CodeQueueEmpty, ctx.Err())
	}
}

// stopWaiting counts a blocked get or put as no longer waiting.
func (q *queue) stopWaiting() {
	q.mu.Lock()
	q.waiting--
	q.mu.Unlock()
}

// errAnswered reports that a put has answered a parked get itself.
var errAnswered = errors.New("supervisor: answered by a put")

// unparkGet claims pg back for its get, which stops waiting; false when a
// put has claimed it first and is answering it. A nil pg was never parked.
func (s *Supervisor) unparkGet(q *queue, pg *parkedGet) bool {
	if pg == nil {
		return true
	}
	if !pg.taken.CompareAndSwap(false, true) {
		return false
	}
	q.mu.Lock()
	q.unpark(pg)
	q.mu.Unlock()
	return true
}

// unbindItems applies each item's unbound mode to those interpreter id put:
// it has just ended.
func (s *Supervisor) unbindItems(id int64) {
	s.qs.mu.Lock()
	all := make([]*queue, 0, len(s.qs.byID))
	for _, q := range s.qs.byID {
		all = append(all, q)
	}
	s.qs.mu.Unlock()
	for _, q := range all {
		var removed []int64
		q.mu.Lock()
		kept := q.items[:0]
		changed := false
		for _, it := range q.items {
			switch {
			case it.from != id:
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
		q.mu.Unlock()
		s.releaseRefs(removed)
	}
}

// closeQueues destroys every queue: the supervisor is closing. Waiters
// wake and find their queue gone.
func (s *Supervisor) closeQueues() {
	s.qs.mu.Lock()
	all := s.qs.byID
	s.qs.byID = nil
	s.qs.mu.Unlock()
	for _, q := range all {
		q.mu.Lock()
		q.items = nil
		q.destroyed = true
		q.signal()
		q.mu.Unlock()
	}
}
