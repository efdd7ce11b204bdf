package node

import (
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// Peers is how the node's Lua code reaches the interpreters of the other
// nodes (daemon.Config.Supervisor.Peers): as a client of the cluster on
// the node's own connection, made when the node starts to serve, so that
// it hears every node that starts after it; the nodes it knows go out in
// the node's status. The output of code it runs elsewhere comes back as
// the notifications of that client; an interpreter runs one call at a
// time, so its ID says which call an output is of.
func (n *Node) Peers() supervisor.Peers { return n.peers }

type peers struct {
	n *Node

	connMu sync.Mutex // held while the client is made
	c      atomic.Pointer[cluster.Client]

	mu   sync.Mutex
	outs map[int64]io.Writer // where the output of a call in progress elsewhere goes
}

var _ supervisor.Peers = (*peers)(nil)

func (p *peers) client(ctx context.Context) (*cluster.Client, error) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if c := p.c.Load(); c != nil {
		return c, nil
	}
	c, err := cluster.Connect(ctx, "", cluster.ClientConfig{
		Cluster: p.n.cfg.Cluster, Conn: p.n.nc, Notify: p.notify,
	})
	if err != nil {
		return nil, err
	}
	p.c.Store(c)
	return c, nil
}

// names are the other nodes the client knows, for the node's status:
// none before the client is made.
func (p *peers) names() []string {
	c := p.c.Load()
	if c == nil {
		return nil
	}
	return p.others(c)
}

func (p *peers) notify(_, method string, body []byte) {
	if method != protocol.NotifyOutput {
		return
	}
	var o protocol.OutputParams
	if msgpack.Unmarshal(body, &o) != nil {
		return
	}
	p.mu.Lock()
	w := p.outs[o.ID]
	p.mu.Unlock()
	if w != nil {
		_, _ = w.Write(o.Data)
	}
}

// others are the live nodes but this one.
func (p *peers) others(c *cluster.Client) []string {
	var out []string
	for _, st := range c.Nodes() {
		if st.Name != p.n.cfg.Name {
			out = append(out, st.Name)
		}
	}
	return out
}

func (p *peers) List(ctx context.Context) ([]supervisor.Info, error) {
	c, err := p.client(ctx)
	if err != nil {
		return nil, err
	}
	nodes := p.others(c)
	parts := make([][]protocol.InterpInfo, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b []byte
			if b, errs[i] = c.Request(ctx, node, protocol.ControlList, &protocol.ListParams{}); errs[i] == nil {
				errs[i] = msgpack.Unmarshal(b, &parts[i])
			}
		}()
	}
	wg.Wait()
	var out []supervisor.Info
	for i, node := range nodes {
		if errs[i] != nil {
			if e := protocol.AsError(errs[i]); e != nil && e.Code == protocol.CodeNodeLost {
				continue // gone from the cluster, and so from its list
			}
			return nil, errs[i]
		}
		for _, in := range parts[i] {
			c.Record(in.ID, node)
			out = append(out, supervisor.Info{ID: in.ID, Pid: in.Pid, Created: time.Unix(0, in.CreatedUnixNano), Running: in.Running, Calls: in.Calls})
		}
	}
	return out, nil
}

// where finds the node of interpreter id: where it was last seen, else
// whichever other node says it has it. "" is no node's.
func (p *peers) where(ctx context.Context, id int64) (*cluster.Client, string, error) {
	c, err := p.client(ctx)
	if err != nil {
		return nil, "", err
	}
	if node, lost, ok := c.Where(id); ok {
		if lost {
			return nil, "", cluster.NodeLost(node, id)
		}
		return c, node, nil
	}
	nodes := p.others(c)
	found := make(chan string, len(nodes))
	var wg sync.WaitGroup
	for _, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Request(ctx, node, protocol.ControlExists, &protocol.IDParams{ID: id})
			var ok bool
			if err == nil && msgpack.Unmarshal(b, &ok) == nil && ok {
				found <- node
			}
		}()
	}
	wg.Wait()
	close(found)
	node := <-found
	if node != "" {
		c.Record(id, node)
	}
	return c, node, nil
}

func (p *peers) Has(ctx context.Context, id int64) (bool, error) {
	_, node, err := p.where(ctx, id)
	if err != nil && protocol.AsError(err).Code == protocol.CodeNodeLost {
		return true, nil // its calls then say the node was lost
	}
	return node != "", err
}

// request sends a request about interpreter id to its node; one the
// node no longer has is forgotten, so a later ID lookup asks afresh.
func (p *peers) request(ctx context.Context, id int64, method string, params any) ([]byte, error) {
	c, node, err := p.where(ctx, id)
	if err != nil {
		return nil, err
	}
	if node == "" {
		return nil, &protocol.Error{Code: protocol.CodeNotFound, Msg: "unrecognized interpreter ID " + strconv.FormatInt(id, 10), InterpreterID: id}
	}
	b, err := c.Request(ctx, node, method, params)
	if err != nil && protocol.AsError(err).Code == protocol.CodeNotFound {
		c.Forget(id)
	}
	return b, err
}

// withOutput sends the output of id's call in progress to out.
func (p *peers) withOutput(id int64, out io.Writer) func() {
	p.mu.Lock()
	p.outs[id] = out
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.outs, id)
		p.mu.Unlock()
	}
}

func (p *peers) IsRunning(ctx context.Context, id int64) (bool, error) {
	b, err := p.request(ctx, id, protocol.ControlIsRunning, &protocol.IDParams{ID: id})
	if err != nil {
		return false, err
	}
	var running bool
	err = msgpack.Unmarshal(b, &running)
	return running, err
}

func (p *peers) Close(ctx context.Context, id int64) error {
	_, err := p.request(ctx, id, protocol.ControlClose, &protocol.IDParams{ID: id})
	if err == nil {
		if c, cerr := p.client(ctx); cerr == nil {
			c.Forget(id)
		}
	}
	return err
}

func (p *peers) Exec(ctx context.Context, id int64, src string, out io.Writer) error {
	defer p.withOutput(id, out)()
	_, err := p.request(ctx, id, protocol.ControlExec, &protocol.ControlExecParams{ID: id, Source: src, TimeoutNs: remaining(ctx)})
	return err
}

func (p *peers) Call(ctx context.Context, id int64, fn string, args []byte, out io.Writer) ([]byte, error) {
	defer p.withOutput(id, out)()
	return p.request(ctx, id, protocol.ControlCall, &protocol.ControlCallParams{ID: id, Fn: fn, Args: args, TimeoutNs: remaining(ctx)})
}

func (p *peers) PrepareMain(ctx context.Context, id int64, names []byte) error {
	_, err := p.request(ctx, id, protocol.ControlPrepareMain, &protocol.InterpPrepareParams{ID: id, Names: names})
	return err
}

// remaining is what is left of ctx's deadline, for the node that runs the
// code to apply itself; 0 is none.
func remaining(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(int64(time.Until(dl)), 1)
}

// close ends the client, if one was made.
func (p *peers) close() {
	p.connMu.Lock()
	c := p.c.Load()
	p.connMu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}
