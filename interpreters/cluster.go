package interpreters

import (
	"context"
	"hash/fnv"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// NodeInfo describes a live node of a cluster.
type NodeInfo struct {
	Name         string
	Interpreters int       // interpreters alive on it, as of its last heartbeat
	Pid          int       // its daemon's process
	Started      time.Time // when its daemon joined
}

// Nodes returns the live nodes of a cluster runtime, by name; other
// runtimes have none.
func (rt *Runtime) Nodes(ctx context.Context) ([]NodeInfo, error) {
	b, err := rt.backend()
	if err != nil {
		return nil, err
	}
	cb, ok := b.(*clusterBackend)
	if !ok {
		return nil, ctx.Err()
	}
	sts := cb.c.Nodes()
	out := make([]NodeInfo, len(sts))
	for i, st := range sts {
		out[i] = NodeInfo{Name: st.Name, Interpreters: st.Interpreters, Pid: st.Pid, Started: time.Unix(0, st.StartedNano)}
	}
	return out, ctx.Err()
}

// Node returns the name of the cluster node hosting the interpreter: ""
// for main, on a local runtime or on a single daemon, and for an
// interpreter no node knows.
func (i *Interpreter) Node() string {
	if i.id == 0 {
		return ""
	}
	b, err := i.rt.backend()
	if err != nil {
		return ""
	}
	cb, ok := b.(*clusterBackend)
	if !ok {
		return ""
	}
	if node, _, ok := cb.c.Where(i.id); ok {
		return node
	}
	_, node, _ := cb.at(context.Background(), i.id, protocol.ControlExists)
	return node
}

func isClusterAddr(addr string) bool {
	return strings.HasPrefix(addr, "nats://") || strings.HasPrefix(addr, "tls://")
}

// clusterBackend is the backend of a cluster runtime: each request goes
// to the node that hosts the interpreter or queue it names, through a
// remoteBackend per node whose requests travel by the cluster client.
type clusterBackend struct {
	c   *cluster.Client
	qs  *cluster.Queues
	out io.Writer

	mu    sync.Mutex
	nodes map[string]*remoteBackend
}

var _ backend = (*clusterBackend)(nil)

func dialCluster(ctx context.Context, addr string, o options) (*clusterBackend, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, helloTimeout)
		defer cancel()
	}
	cb := &clusterBackend{out: o.stdout, nodes: make(map[string]*remoteBackend)}
	if cb.out == nil {
		cb.out = hostStdout{}
	}
	c, err := cluster.Connect(ctx, addr, cluster.ClientConfig{
		Cluster: o.cluster, Token: o.token, TLS: o.tls, CredsFile: o.creds,
		Notify: func(node, method string, body []byte) { cb.node(node).notify(method, body) },
		Serve: func(ctx context.Context, node, method string, body []byte) (any, error) {
			if method != protocol.MethodHostCall {
				return nil, protocol.Errorf(protocol.CodeProtocol, "a cluster client serves no %q", method)
			}
			return protocol.Handle(cb.node(node).host.serve)(ctx, body)
		},
	})
	if err != nil {
		return nil, fromWire(err)
	}
	cb.c = c
	if cb.qs, err = c.Queues(); err != nil {
		c.Close()
		return nil, fromWire(err)
	}
	return cb, nil
}

// node is the remoteBackend of one node.
func (cb *clusterBackend) node(name string) *remoteBackend {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	rb := cb.nodes[name]
	if rb == nil {
		rb = &remoteBackend{
			addr: "cluster node " + name, defaultOut: cb.out,
			outs: make(map[int64]io.Writer), restarts: make(map[int64]func(supervisor.RestartEvent)),
			via: func(ctx context.Context, method string, params any) ([]byte, error) {
				return cb.c.Request(ctx, name, method, params)
			},
		}
		cb.nodes[name] = rb
	}
	return rb
}

// place picks the node for a new interpreter or queue.
func (cb *clusterBackend) place(node, key string) (string, error) {
	if node != "" {
		if !cb.c.Live(node) {
			return "", protocol.Errorf(protocol.CodeInvalidArgument, "no live node named %q in the cluster", node)
		}
		return node, nil
	}
	live := cb.c.Nodes()
	if len(live) == 0 {
		return "", protocol.Errorf(protocol.CodeUnavailable, "the cluster has no live node")
	}
	best := live[0]
	if key != "" {
		var top uint64
		for _, st := range live {
			h := fnv.New64a()
			h.Write([]byte(key))
			h.Write([]byte{0})
			h.Write([]byte(st.Name))
			if s := h.Sum64(); s >= top {
				top, best = s, st
			}
		}
		return best.Name, nil
	}
	for _, st := range live[1:] {
		if st.Interpreters < best.Interpreters {
			best = st
		}
	}
	return best.Name, nil
}

// at finds the node of interpreter or queue id: where it was last seen,
// else whichever live node says it has it (asked with method, Exists or
// queue info). A lost node's are ErrNodeLost; an ID no node has is not
// found.
func (cb *clusterBackend) at(ctx context.Context, id int64, method string) (*remoteBackend, string, error) {
	if node, lost, ok := cb.c.Where(id); ok {
		if lost {
			return nil, node, cluster.NodeLost(node, id)
		}
		return cb.node(node), node, nil
	}
	live := cb.c.Nodes()
	found := make(chan string, len(live))
	var wg sync.WaitGroup
	for _, st := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rb := cb.node(st.Name)
			var ok bool
			if method == protocol.ControlExists {
				ok, _ = rb.Exists(id)
			} else {
				_, err := rb.Queue(id)
				ok = err == nil
			}
			if ok {
				found <- st.Name
			}
		}()
	}
	wg.Wait()
	close(found)
	node, ok := <-found
	if !ok {
		if method == protocol.ControlExists {
			return nil, "", &protocol.Error{Code: protocol.CodeNotFound, Msg: "unrecognized interpreter ID " + itoa(id), InterpreterID: id}
		}
		return nil, "", protocol.Errorf(protocol.CodeQueueNotFound, "queue %d not found", id)
	}
	cb.c.Record(id, node)
	return cb.node(node), node, ctx.Err()
}

func (cb *clusterBackend) interp(id int64) (*remoteBackend, error) {
	rb, _, err := cb.at(context.Background(), id, protocol.ControlExists)
	return rb, err
}

// create places and creates an interpreter.
// The interpreter is counted on its node while it is being created, so
// that concurrent creates see one another.
func (cb *clusterBackend) create(ctx context.Context, opts supervisor.CreateOptions, node, key string) (int64, error) {
	var name string
	if node == "" && key == "" {
		if name = cb.c.PlaceLeastLoaded(); name == "" {
			return 0, protocol.Errorf(protocol.CodeUnavailable, "the cluster has no live node")
		}
	} else {
		var err error
		if name, err = cb.place(node, key); err != nil {
			return 0, err
		}
		cb.c.Placing(name)
	}
	id, err := cb.node(name).Create(ctx, opts)
	cb.c.Landed(name, id)
	if err != nil {
		return 0, err
	}
	cb.c.Record(id, name)
	return id, nil
}

func (cb *clusterBackend) Create(ctx context.Context, opts supervisor.CreateOptions) (int64, error) {
	return cb.create(ctx, opts, "", "")
}

func (cb *clusterBackend) Exec(ctx context.Context, id int64, name, src string) error {
	rb, err := cb.interp(id)
	if err != nil {
		return err
	}
	return rb.Exec(ctx, id, name, src)
}

func (cb *clusterBackend) Call(ctx context.Context, id int64, fn string, args []byte) ([]byte, error) {
	rb, err := cb.interp(id)
	if err != nil {
		return nil, err
	}
	return rb.Call(ctx, id, fn, args)
}

func (cb *clusterBackend) PrepareMain(ctx context.Context, id int64, names []byte) error {
	rb, err := cb.interp(id)
	if err != nil {
		return err
	}
	return rb.PrepareMain(ctx, id, names)
}

func (cb *clusterBackend) CloseInterpreter(id int64) error {
	rb, err := cb.interp(id)
	if err != nil {
		return err
	}
	if err := rb.CloseInterpreter(id); err != nil {
		return err
	}
	cb.c.Forget(id)
	return nil
}

func (cb *clusterBackend) IsRunning(id int64) (bool, error) {
	rb, err := cb.interp(id)
	if err != nil {
		return false, err
	}
	return rb.IsRunning(id)
}

func (cb *clusterBackend) Pid(id int64) (int, error) {
	rb, err := cb.interp(id)
	if err != nil {
		return 0, err
	}
	return rb.Pid(id)
}

// Stats asks id's node for the resource use of its worker.
func (cb *clusterBackend) Stats(ctx context.Context, id int64) (protocol.WorkerStats, error) {
	rb, err := cb.interp(id)
	if err != nil {
		return protocol.WorkerStats{}, err
	}
	return rb.Stats(ctx, id)
}

func (cb *clusterBackend) Exists(id int64) (bool, error) {
	if node, lost, ok := cb.c.Where(id); ok && !lost {
		live, err := cb.node(node).Exists(id)
		if err == nil && !live {
			cb.c.Forget(id)
		}
		return live, err
	}
	_, _, err := cb.at(context.Background(), id, protocol.ControlExists)
	if err == nil {
		return true, nil
	}
	if protocol.AsError(err).Code == protocol.CodeNotFound {
		return false, nil
	}
	return false, err
}

// everyNode runs f on each live node at once and gathers what they give.
// A node lost meanwhile is left out, as it is from the cluster; any other
// failure is the answer.
func everyNode[T any](cb *clusterBackend, f func(name string, rb *remoteBackend) ([]T, error)) ([]T, error) {
	live := cb.c.Nodes()
	parts := make([][]T, len(live))
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, st := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i], errs[i] = f(st.Name, cb.node(st.Name))
		}()
	}
	wg.Wait()
	var out []T
	for i := range live {
		if err := errs[i]; err != nil {
			if protocol.AsError(err).Code == protocol.CodeNodeLost {
				continue
			}
			return nil, err
		}
		out = append(out, parts[i]...)
	}
	return out, nil
}

func (cb *clusterBackend) List(ctx context.Context) ([]supervisor.Info, error) {
	out, err := everyNode(cb, func(name string, rb *remoteBackend) ([]supervisor.Info, error) {
		infos, err := rb.List(ctx)
		for _, in := range infos {
			cb.c.Record(in.ID, name)
		}
		return infos, err
	})
	sortByCreation(out, func(in supervisor.Info) (time.Time, int64) { return in.Created, in.ID })
	return out, err
}

func (cb *clusterBackend) Describe(ctx context.Context) ([]InterpreterInfo, error) {
	out, err := everyNode(cb, func(name string, rb *remoteBackend) ([]InterpreterInfo, error) {
		infos, err := rb.Describe(ctx)
		for i := range infos {
			infos[i].Node = name
			cb.c.Record(infos[i].ID, name)
		}
		return infos, err
	})
	sortByCreation(out, func(in InterpreterInfo) (time.Time, int64) { return in.Created, in.ID })
	return out, err
}

// sortByCreation orders interpreters oldest first, as ListAll lists them:
// cluster IDs come in per-node blocks, so they are unique but not in
// creation order across nodes.
func sortByCreation[T any](s []T, key func(T) (time.Time, int64)) {
	sort.Slice(s, func(i, j int) bool {
		ti, idi := key(s[i])
		tj, idj := key(s[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return idi < idj
	})
}

func (cb *clusterBackend) Close() error { return cb.c.Close() }

// A cluster's queues are the cluster's (cluster.Queues, in JetStream):
// a node makes one, so that its ID comes from the cluster's counter, and
// the client reaches every queue directly in JetStream, not through a
// node, so that no node's loss costs it an item it was being handed. A
// queue lives on in JetStream until the cluster's streams are removed:
// the handles to it are spread over processes the client cannot count.
// clusterQueueWait bounds a queue request that has no context of its
// own: long enough to outlast a JetStream failover.
const clusterQueueWait = 30 * time.Second

func (cb *clusterBackend) CreateQueue(maxsize int, mode protocol.UnboundMode) (int64, error) {
	name, err := cb.place("", "")
	if err != nil {
		return 0, err
	}
	return cb.node(name).CreateQueue(maxsize, mode)
}

// RetainQueue checks that queue id exists: nothing counts handles to
// the cluster's queues.
func (cb *clusterBackend) RetainQueue(id int64) error {
	_, err := cb.Queue(id)
	return err
}

func (cb *clusterBackend) ReleaseQueue(int64) {}

func (cb *clusterBackend) Queue(id int64) (supervisor.QueueInfo, error) {
	if id < 0 {
		return supervisor.QueueInfo{}, protocol.Errorf(protocol.CodeInvalidArgument, "queue ID must be a non-negative int, got %d", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueueWait)
	defer cancel()
	c, size, err := cb.qs.Info(ctx, id)
	if err != nil {
		return supervisor.QueueInfo{}, err
	}
	return supervisor.QueueInfo{ID: id, MaxSize: c.MaxSize, Unbound: c.Unbound, Size: size}, nil
}

// QueuePut: a non-blocking put is one quick try even under an expired
// context, as it is locally.
func (cb *clusterBackend) QueuePut(ctx context.Context, p supervisor.PutRequest) error {
	if p.Unbound != 0 && !p.Unbound.Valid() {
		return protocol.Errorf(protocol.CodeInvalidArgument, "unsupported unbound mode %d", p.Unbound)
	}
	if !p.Block {
		ctx = context.Background()
	}
	err := cb.qs.Put(ctx, p.Queue, cluster.QueueItem{Data: p.Item, Unbound: p.Unbound}, p.Block)
	return queueWaitEnded(ctx, err, p.Queue, protocol.CodeQueueFull)
}

func (cb *clusterBackend) QueueGet(ctx context.Context, g supervisor.GetRequest) (supervisor.QueueItem, error) {
	if !g.Block {
		ctx = context.Background()
	}
	data, unbound, err := cb.qs.Receive(ctx, g.Queue, g.Block)
	if err != nil {
		return supervisor.QueueItem{}, queueWaitEnded(ctx, err, g.Queue, protocol.CodeQueueEmpty)
	}
	return supervisor.QueueItem{Data: data, Unbound: unbound}, nil
}

func (cb *clusterBackend) DescribeQueues(ctx context.Context) ([]QueueInfo, error) {
	sts, err := cb.qs.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]QueueInfo, len(sts))
	for i, st := range sts {
		out[i] = QueueInfo{ID: st.ID, MaxSize: st.Config.MaxSize, Size: st.Size, UnboundItems: UnboundMode(st.Config.Unbound), Pinned: st.Pins > 0, Waiting: st.Waiting}
	}
	return out, nil
}

// PinQueue marks queue id pinned for listings: a cluster's queue lives on
// without a pin.
func (cb *clusterBackend) PinQueue(id int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueueWait)
	defer cancel()
	return cb.qs.Pin(ctx, id)
}

// UnpinQueue drops a pin PinQueue made.
func (cb *clusterBackend) UnpinQueue(id int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueueWait)
	defer cancel()
	return cb.qs.Unpin(ctx, id)
}

// errNoNode is Create's answer to WithNode on a runtime that is not a
// cluster.
func errNoNode(node string) error {
	return errorf(ErrInvalidArgument, "no node named %q: this runtime is not a cluster", node)
}
