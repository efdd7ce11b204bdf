package supervisor

import (
	"context"
	"sort"
	"sync"

	"github.com/subinterp/subinterp/protocol"
)

// queueSet is the supervisor's queues by ID, and what keeps each alive.
//
// A queue lives while anything can still reach it: a host handle
// (retain), an interpreter it was handed to (held until that interpreter
// ends), or an item of another live queue. When the last of these goes,
// the queue and its items are destroyed. The counts are guarded by mu; lock
// order is the set's mu, then a queue's.
type queueSet struct {
	mu     sync.Mutex
	nextID int64
	byID   map[int64]*queue

	// lives reports whether interpreter id has not ended yet. Checked
	// under a lock its end also takes next (mu before a hold, a queue's mu
	// before a put), so what it lets through is undone by that end: a hold
	// released by releaseHolder, an item unbound by unbind.
	lives func(id int64) bool

	// stored, when the queues live in a QueueStore, is which of them each
	// interpreter holds: the set itself keeps none.
	stored map[int64]map[int64]struct{}
}

// add makes a queue with ID id (0: the set's next), held by interpreter by,
// or retained once for the host when by is 0.
func (qs *queueSet) add(id int64, maxsize int, mode protocol.UnboundMode, by int64) int64 {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.byID == nil {
		qs.byID = make(map[int64]*queue)
	}
	if id == 0 {
		qs.nextID++
		id = qs.nextID
	}
	q := &queue{id: id, maxsize: maxsize, unbound: mode, changed: make(chan struct{}), holders: map[int64]struct{}{}}
	if by == 0 {
		q.hostRefs = 1
	} else {
		q.holders[by] = struct{}{}
	}
	qs.byID[id] = q
	return id
}

// lookup returns queue id.
func (qs *queueSet) lookup(id int64) (*queue, error) {
	if id < 0 {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "queue ID must be a non-negative int, got %d", id)
	}
	qs.mu.Lock()
	q := qs.byID[id]
	qs.mu.Unlock()
	if q == nil {
		return nil, queueNotFound(id)
	}
	return q, nil
}

// all returns every queue, in no order.
func (qs *queueSet) all() []*queue {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	all := make([]*queue, 0, len(qs.byID))
	for _, q := range qs.byID {
		all = append(all, q)
	}
	return all
}

// infos describes every queue, by ID.
func (qs *queueSet) infos() []QueueInfo {
	all := qs.all()
	infos := make([]QueueInfo, 0, len(all))
	for _, q := range all {
		infos = append(infos, q.info())
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos
}

// retain counts one more host handle on queue id.
func (qs *queueSet) retain(id int64) error {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byID[id]
	if q == nil {
		return queueNotFound(id)
	}
	q.hostRefs++
	return nil
}

// release drops one host handle on queue id.
func (qs *queueSet) release(id int64) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byID[id]
	if q != nil && q.hostRefs > 0 {
		q.hostRefs--
	}
	qs.collect(q)
}

// hold records that interpreter by reached the queues ids: it can reach
// them until it ends.
func (qs *queueSet) hold(by int64, ids ...int64) {
	if len(ids) == 0 {
		return
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if !qs.lives(by) {
		return
	}
	if qs.stored != nil {
		held := qs.stored[by]
		if held == nil {
			held = make(map[int64]struct{})
			qs.stored[by] = held
		}
		for _, id := range ids {
			held[id] = struct{}{}
		}
		return
	}
	for _, id := range ids {
		if q := qs.byID[id]; q != nil {
			q.holders[by] = struct{}{}
		}
	}
}

// holds reports whether interpreter by holds queue id: made it, or was
// handed it.
func (qs *queueSet) holds(by, id int64) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	if qs.stored != nil {
		_, ok := qs.stored[by][id]
		return ok
	}
	q := qs.byID[id]
	if q == nil {
		return false
	}
	_, ok := q.holders[by]
	return ok
}

// deliver hands the queues inside the msgpack value b to their receiver:
// an interpreter holds them until it ends; the host gets one retain per
// occurrence, which its handles adopt or release.
func (qs *queueSet) deliver(to int64, b []byte) {
	ids := protocol.QueueIDs(b)
	if to != 0 {
		qs.hold(to, ids...)
		return
	}
	if len(ids) == 0 {
		return
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for _, id := range ids {
		if q := qs.byID[id]; q != nil {
			q.hostRefs++
		}
	}
}

// releaseHolder drops every hold of interpreter by, which has ended.
func (qs *queueSet) releaseHolder(by int64) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	delete(qs.stored, by)
	for _, q := range qs.byID {
		if _, ok := q.holders[by]; ok {
			delete(q.holders, by)
			qs.collect(q)
		}
	}
}

// collect destroys q if nothing reaches it any more, and with it whatever
// only its items reached. qs.mu is held.
func (qs *queueSet) collect(q *queue) {
	if q == nil || q.hostRefs > 0 || len(q.holders) > 0 || q.itemRefs > 0 || qs.byID[q.id] != q {
		return
	}
	delete(qs.byID, q.id)
	for _, it := range q.destroy() {
		qs.dropRefs(it.refs)
	}
}

// itemRefs counts the queues inside an item about to be put.
func (qs *queueSet) itemRefs(data []byte) []int64 {
	ids := protocol.QueueIDs(data)
	if len(ids) == 0 {
		return nil
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	for _, id := range ids {
		if r := qs.byID[id]; r != nil {
			r.itemRefs++
		}
	}
	return ids
}

// dropRefs releases the queues an item carried. qs.mu is held.
func (qs *queueSet) dropRefs(refs []int64) {
	for _, id := range refs {
		if r := qs.byID[id]; r != nil {
			r.itemRefs--
			qs.collect(r)
		}
	}
}

// releaseRefs releases the queues carried by an item that left its queue
// or never entered it. qs.mu is not held.
func (qs *queueSet) releaseRefs(refs []int64) {
	if len(refs) == 0 {
		return
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.dropRefs(refs)
}

// put puts p's item into its queue.
func (qs *queueSet) put(ctx context.Context, p PutRequest) error {
	if p.Unbound != 0 && !p.Unbound.Valid() {
		return protocol.Errorf(protocol.CodeInvalidArgument, "unsupported unbound mode %d", p.Unbound)
	}
	q, err := qs.lookup(p.Queue)
	if err != nil {
		return err
	}
	return q.put(ctx, qs, p, qs.itemRefs(p.Item))
}

// get takes an item from g's queue.
func (qs *queueSet) get(ctx context.Context, g GetRequest) (QueueItem, error) {
	q, err := qs.lookup(g.Queue)
	if err != nil {
		return QueueItem{}, err
	}
	return q.get(ctx, qs, g)
}

// unbind applies the unbound modes of the items interpreter id put, in
// every queue: it has just ended.
func (qs *queueSet) unbind(id int64) {
	for _, q := range qs.all() {
		qs.releaseRefs(q.unbind(id))
	}
}

// closeAll destroys every queue: the supervisor is closing. Waiters wake
// and find their queue gone.
func (qs *queueSet) closeAll() {
	qs.mu.Lock()
	all := qs.byID
	qs.byID = nil
	qs.mu.Unlock()
	for _, q := range all {
		q.destroy()
	}
}
