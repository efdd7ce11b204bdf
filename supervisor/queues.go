package supervisor

import (
	"context"

	"github.com/subinterp/subinterp/protocol"
)

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
	if s.stored() {
		return s.storeCreate(maxsize, mode, by)
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
	return s.qs.add(id, maxsize, mode, by), nil
}

// RetainQueue counts one more host handle on queue id.
// A queue of a QueueStore is not counted: it lives on in the store.
func (s *Supervisor) RetainQueue(id int64) error {
	if s.stored() {
		_, err := s.storeInfo(id)
		return err
	}
	return s.qs.retain(id)
}

// ReleaseQueue drops one host handle on queue id; the queue is destroyed
// when nothing else reaches it.
func (s *Supervisor) ReleaseQueue(id int64) {
	if !s.stored() {
		s.qs.release(id)
	}
}

// Queue describes queue id.
func (s *Supervisor) Queue(id int64) (QueueInfo, error) {
	if s.stored() {
		return s.storeInfo(id)
	}
	q, err := s.qs.lookup(id)
	if err != nil {
		return QueueInfo{}, err
	}
	return q.info(), nil
}

// Queues describes every queue, by ID: none when a QueueStore keeps them.
func (s *Supervisor) Queues() []QueueInfo { return s.qs.infos() }

// QueuePut appends p's item to its queue. With p.Block it waits while the
// queue is full until ctx ends, then fails with CodeQueueFull, as it does
// at once without.
func (s *Supervisor) QueuePut(ctx context.Context, p PutRequest) error {
	if s.stored() {
		return s.storePut(ctx, p)
	}
	return s.qs.put(ctx, p)
}

// QueueGet removes and returns the oldest item of g's queue. With g.Block
// it waits while the queue is empty until ctx ends, then fails with
// CodeQueueEmpty, as it does at once without. The queues inside the item
// are retained once each for the host. With g.Settles the caller settles
// the item (QueueItem.Settle).
func (s *Supervisor) QueueGet(ctx context.Context, g GetRequest) (QueueItem, error) {
	g.by, g.answer = 0, nil
	if !s.stored() {
		return s.qs.get(ctx, g)
	}
	it, err := s.storeGet(ctx, g.Queue, g.Block, 0)
	if it.Settle != nil && !g.Settles {
		it.Settle(true)
		it.Settle = nil
	}
	return it, err
}

// interpLives reports whether interpreter id has not ended yet (see
// queueSet.lives).
func (s *Supervisor) interpLives(id int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.interps[id]
	return ok
}
