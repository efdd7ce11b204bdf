package node

import (
	"context"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// queueStore is the node's supervisor.QueueStore: the cluster's
// JetStream queues, with the node's name on the items its interpreters
// put.
type queueStore struct {
	qs   *cluster.Queues
	node string
}

var _ supervisor.QueueStore = (*queueStore)(nil)

// Queues is the store the daemon's supervisor keeps every queue in
// (daemon.Config.Supervisor.Queues), so that they are the cluster's.
func (n *Node) Queues() supervisor.QueueStore { return n.store }

func (s *queueStore) CreateQueue(ctx context.Context, id int64, maxsize int, mode protocol.UnboundMode) error {
	return s.qs.Create(ctx, id, cluster.QueueConfig{MaxSize: maxsize, Unbound: mode})
}

func (s *queueStore) QueueInfo(ctx context.Context, id int64) (supervisor.QueueInfo, error) {
	c, size, err := s.qs.Info(ctx, id)
	if err != nil {
		return supervisor.QueueInfo{}, err
	}
	return supervisor.QueueInfo{ID: id, MaxSize: c.MaxSize, Unbound: c.Unbound, Size: size}, nil
}

func (s *queueStore) QueuePut(ctx context.Context, p supervisor.PutRequest) error {
	it := cluster.QueueItem{Data: p.Item, Putter: p.From, Unbound: p.Unbound}
	if p.From != 0 {
		it.PutterNode = s.node
	}
	return s.qs.Put(ctx, p.Queue, it, p.Block)
}

func (s *queueStore) QueueGet(ctx context.Context, id int64, block bool) (supervisor.QueueItem, error) {
	data, unbound, settle, err := s.qs.ReceiveToHand(ctx, id, block)
	if err != nil {
		return supervisor.QueueItem{}, err
	}
	return supervisor.QueueItem{Data: data, Unbound: unbound, Settle: settle}, nil
}

// answerAlive tells whoever took an item this node's interpreter put
// whether that interpreter still lives.
func (n *Node) answerAlive(d *daemon.Server, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	ans := "0"
	if id, err := strconv.ParseInt(string(m.Data), 10, 64); err == nil && d.Exists(id) {
		ans = "1"
	}
	_ = m.Respond([]byte(ans))
}
