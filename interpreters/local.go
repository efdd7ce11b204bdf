package interpreters

import (
	"context"
	"sync"
	"time"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// localBackend is the backend of a runtime made by New: its own supervisor,
// whose calls cannot fail for want of a connection.
type localBackend struct {
	*supervisor.Supervisor

	mu   sync.Mutex
	pins map[int64]int // references PinQueue took, by queue
}

func newLocalBackend(sup *supervisor.Supervisor) *localBackend {
	return &localBackend{Supervisor: sup, pins: make(map[int64]int)}
}

func (l *localBackend) Exists(id int64) (bool, error) { return l.Supervisor.Exists(id), nil }

func (l *localBackend) List(context.Context) ([]supervisor.Info, error) {
	return l.Supervisor.List(), nil
}

// statsTimeout bounds the wait for one worker's resource figures: a
// listing shows what it has rather than wait on a busy worker.
const statsTimeout = time.Second

func (l *localBackend) Describe(ctx context.Context) ([]InterpreterInfo, error) {
	infos := l.Supervisor.List()
	out := make([]InterpreterInfo, len(infos))
	var wg sync.WaitGroup
	for i, in := range infos {
		out[i] = InterpreterInfo{ID: in.ID, Pid: in.Pid, Created: in.Created, Running: in.Running, Calls: in.Calls}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, statsTimeout)
			defer cancel()
			if st, err := l.Stats(sctx, in.ID); err == nil {
				out[i].RSSBytes = st.RSSBytes
				out[i].CPUTime = time.Duration(st.CPUNanos)
			}
		}()
	}
	wg.Wait()
	return out, nil
}

func (l *localBackend) DescribeQueues(context.Context) ([]QueueInfo, error) {
	qs := l.Supervisor.Queues()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]QueueInfo, len(qs))
	for i, q := range qs {
		out[i] = QueueInfo{ID: q.ID, MaxSize: q.MaxSize, Size: q.Size, UnboundItems: UnboundMode(q.Unbound), Pinned: l.pins[q.ID] > 0, Waiting: q.Waiting}
	}
	return out, nil
}

func (l *localBackend) PinQueue(id int64) error {
	if err := l.RetainQueue(id); err != nil {
		return err
	}
	l.mu.Lock()
	l.pins[id]++
	l.mu.Unlock()
	return nil
}

func (l *localBackend) UnpinQueue(id int64) error {
	l.mu.Lock()
	n := l.pins[id]
	if n > 0 {
		if n == 1 {
			delete(l.pins, id)
		} else {
			l.pins[id] = n - 1
		}
	}
	l.mu.Unlock()
	if n == 0 {
		return notPinned(id)
	}
	l.ReleaseQueue(id)
	return nil
}

func notPinned(id int64) *protocol.Error {
	return protocol.Errorf(protocol.CodeInvalidArgument, "queue %d is not pinned", id)
}
