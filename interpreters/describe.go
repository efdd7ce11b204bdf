package interpreters

import (
	"context"
	"time"
)

// InterpreterInfo describes a live interpreter, for monitoring: what
// `subinterp ls` shows.
type InterpreterInfo struct {
	ID      int64
	Pid     int       // the worker process
	Created time.Time // when Create returned
	Running bool      // a call is in progress
	Calls   int64     // calls made so far (Exec, Call, PrepareMain)
	// RSSBytes and CPUTime are the worker's resident memory and CPU time
	// so far; zero when the worker did not answer in time.
	RSSBytes int64
	CPUTime  time.Duration
	// Node is the cluster node hosting it; "" outside a cluster.
	Node string
}

// Describe returns a description of every live interpreter except main,
// oldest first. It asks each worker for its resource use, which a busy
// worker answers too; one that does not answer within a second is listed
// without figures.
func (rt *Runtime) Describe(ctx context.Context) ([]InterpreterInfo, error) {
	b, err := rt.backend()
	if err != nil {
		return nil, err
	}
	infos, err := b.Describe(ctx)
	if err != nil {
		return nil, fromWire(err)
	}
	return infos, nil
}

// QueueInfo describes a queue, for monitoring.
type QueueInfo struct {
	ID           int64
	MaxSize      int // as given to CreateQueue; <= 0 means unbounded
	Size         int // items in the queue
	UnboundItems UnboundMode
	Pinned       bool // Pin holds it
	Waiting      int  // gets and puts blocked on it now
}

// DescribeQueues describes every queue of the runtime, by ID, without
// taking references on them.
func (rt *Runtime) DescribeQueues(ctx context.Context) ([]QueueInfo, error) {
	b, err := rt.queueBackend()
	if err != nil {
		return nil, err
	}
	qs, err := b.DescribeQueues(ctx)
	if err != nil {
		return nil, fromWire(err)
	}
	return qs, nil
}

// Pin keeps the queue alive once no handle, interpreter or item reaches it
// any more, until Unpin. On a runtime from Dial the daemon holds the pin,
// so the queue outlives the connection: that is how `subinterp queue
// create` makes a queue that later commands can use. Each Pin needs its
// own Unpin.
func (q *Queue) Pin() error {
	b, err := q.rt.queueBackend()
	if err != nil {
		return err
	}
	return fromWire(b.PinQueue(q.id))
}

// Unpin drops one pin Pin took; the queue then lives as long as something
// reaches it. A queue that is not pinned gives ErrInvalidArgument.
func (q *Queue) Unpin() error {
	b, err := q.rt.queueBackend()
	if err != nil {
		return err
	}
	return fromWire(b.UnpinQueue(q.id))
}
