package supervisor

import (
	"context"
	"time"

	"github.com/subinterp/subinterp/protocol"
)

// QueueStore keeps a supervisor's queues outside it, where other
// supervisors share them: a cluster node plugs one in so that every queue
// its interpreters make or reach is the cluster's. The supervisor only
// counts which interpreter holds which queue (for confinement); what a
// queue holds, its order, its bounds and its waits are the store's.
//
// Errors are *protocol.Error: CodeQueueNotFound, CodeQueueFull and
// CodeQueueEmpty as the local queues give them, CodeItemDestroyed for an
// UnboundError item whose putter is gone.
type QueueStore interface {
	// CreateQueue makes queue id; mode is never 0.
	CreateQueue(ctx context.Context, id int64, maxsize int, mode protocol.UnboundMode) error
	// QueueInfo describes queue id (Waiting is left 0).
	QueueInfo(ctx context.Context, id int64) (QueueInfo, error)
	// QueuePut appends p's item, recording p.From as its putter and
	// p.Unbound (0: the queue's default) as its mode. With p.Block it
	// waits while the queue is full until ctx ends.
	QueuePut(ctx context.Context, p PutRequest) error
	// QueueGet takes the oldest item, with the unbound mode of an item
	// whose putter is gone applied: an UnboundRemove item is skipped, an
	// UnboundReplace one comes back Unbound. With block it waits while
	// the queue is empty until ctx ends. A store that must know whether
	// the item reached its getter (a worker's get goes on after QueueGet
	// returns) sets its Settle.
	QueueGet(ctx context.Context, id int64, block bool) (QueueItem, error)
}

// storeWait bounds a store request that has no deadline of its own (a
// queue's info, its creation).
const storeWait = 30 * time.Second

// stored reports whether queues live in a QueueStore.
func (s *Supervisor) stored() bool { return s.cfg.Queues != nil }

// storeCreate makes a queue in the store for interpreter by (0: the host).
func (s *Supervisor) storeCreate(maxsize int, mode protocol.UnboundMode, by int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeWait)
	defer cancel()
	id, err := s.cfg.NextID(ctx)
	if err != nil {
		return 0, protocol.Errorf(protocol.CodeInterpreter, "queue creation failed: no ID: %v", err)
	}
	if err := s.cfg.Queues.CreateQueue(ctx, id, maxsize, mode); err != nil {
		return 0, err
	}
	if by != 0 {
		s.qs.hold(by, id)
	}
	return id, nil
}

// storeInfo describes queue id of the store.
func (s *Supervisor) storeInfo(id int64) (QueueInfo, error) {
	if id < 0 {
		return QueueInfo{}, protocol.Errorf(protocol.CodeInvalidArgument, "queue ID must be a non-negative int, got %d", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeWait)
	defer cancel()
	info, err := s.cfg.Queues.QueueInfo(ctx, id)
	info.ID = id
	return info, err
}

// storePut puts into a queue of the store; a wait the context ended is
// told as the local queues tell it.
func (s *Supervisor) storePut(ctx context.Context, p PutRequest) error {
	if p.Unbound != 0 && !p.Unbound.Valid() {
		return protocol.Errorf(protocol.CodeInvalidArgument, "unsupported unbound mode %d", p.Unbound)
	}
	err := s.cfg.Queues.QueuePut(ctx, p)
	return protocol.WaitEnded(ctx, p.Queue, protocol.CodeQueueFull, err)
}

// storeGet takes an item for interpreter by (0: the host) from a queue of
// the store, and hands it the queues inside. The caller settles it.
func (s *Supervisor) storeGet(ctx context.Context, id int64, block bool, by int64) (QueueItem, error) {
	it, err := s.cfg.Queues.QueueGet(ctx, id, block)
	if err != nil {
		return QueueItem{}, protocol.WaitEnded(ctx, id, protocol.CodeQueueEmpty, err)
	}
	if !it.Unbound && by != 0 {
		s.qs.hold(by, protocol.QueueIDs(it.Data)...)
	}
	return it, nil
}
