package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Bounded waits of a client.
const (
	// cancelWait is how long a cancelled request waits for the node's
	// answer, which says what became of the call, before it is abandoned.
	cancelWait = 10 * time.Second
	// discoverWait bounds Connect's wait for the first node to answer its
	// ping: one that is up answers at once, and one that just started
	// says so within a heartbeat.
	discoverWait = HeartbeatInterval + 500*time.Millisecond
	// discoverSettle is how long Connect goes on gathering answers after
	// the first before it counts on the peers the answers name.
	discoverSettle = 50 * time.Millisecond
	// lossCheck is how often the client looks for silent nodes.
	lossCheck = 250 * time.Millisecond
)

// ClientConfig configures a Client. The zero value connects without
// credentials to the cluster named DefaultName.
type ClientConfig struct {
	// Cluster is the cluster's name; empty means DefaultName.
	Cluster string
	// Token authenticates to NATS (server "authorization" token).
	Token string
	// TLS configures the connection's TLS, such as the CA that signed the
	// NATS servers' certificates.
	TLS *tls.Config
	// CredsFile is a NATS credentials file (a user JWT and its nkey seed).
	CredsFile string
	// Notify receives each notification a node sends (output, restart
	// notices), in order, before the answer of the request that caused it.
	Notify func(node, method string, body []byte)
	// Serve answers a node's request of the client (a host function
	// call); each runs on a goroutine of its own.
	Serve func(ctx context.Context, node, method string, body []byte) (any, error)
	// Conn, when set, is a connection to use instead of dialing (a node
	// reaching the others on its own connection); the url and the
	// credentials are then unused, and Close leaves it open.
	Conn *nats.Conn
}

// Client is one connection to a cluster: it tracks the live nodes from
// their heartbeats, sends each request to one node and waits for its
// answer, and fails the requests of a node that goes silent with
// protocol.CodeNodeLost.
type Client struct {
	cfg   ClientConfig
	subj  Subjects
	nc    *nats.Conn
	subs  []*nats.Subscription // closed by Close on a borrowed Conn
	id    string
	inbox string

	mu        sync.Mutex
	nextCall  uint64
	pending   map[uint64]*pending
	nodes     map[string]*nodeState // the live nodes, by name
	lost      map[string]bool       // instances declared lost
	located   map[int64]instance    // where interpreters and queues live
	connected bool
	closed    bool
	heard     chan struct{} // closed when the first node answers
	heardOnce sync.Once
	news      chan struct{} // a status arrived: for Connect's discovery
	done      chan struct{}
	// life ends when the client closes: the context of the requests it
	// serves.
	life context.Context
	end  context.CancelFunc
}

type nodeState struct {
	st   Status
	seen time.Time
	// placed are the interpreters this client created there that its
	// last heartbeat did not count (their IDs are above its LastID).
	placed []int64
	// inflight counts the creates this client has sent there that have
	// not returned: no heartbeat can be relied on to count them yet.
	inflight int
}

type instance struct{ node, id string }

type pending struct {
	at   instance
	done chan struct{}
	once sync.Once
	res  []byte
	err  error
}

func (p *pending) finish(res []byte, err error) {
	p.once.Do(func() {
		p.res, p.err = res, err
		close(p.done)
	})
}

// Connect connects to the NATS server at url, finds the cluster's nodes
// and returns a Client. It fails when NATS cannot be reached or refuses
// the credentials; a cluster with no node yet is no error.
func Connect(ctx context.Context, url string, cfg ClientConfig) (*Client, error) {
	if cfg.Cluster == "" {
		cfg.Cluster = DefaultName
	}
	if err := CheckName("cluster", cfg.Cluster); err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "%v", err)
	}
	c := &Client{
		cfg: cfg, subj: Subjects{cfg.Cluster}, pending: make(map[uint64]*pending), nodes: make(map[string]*nodeState),
		lost: make(map[string]bool), located: make(map[int64]instance), connected: true,
		heard: make(chan struct{}), news: make(chan struct{}, 1), done: make(chan struct{}),
	}
	c.life, c.end = context.WithCancel(context.Background())
	opts := []nats.Option{
		nats.Name("subinterp client"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { c.disconnected() }),
		nats.ReconnectHandler(func(*nats.Conn) { c.setConnected(true) }),
		nats.ClosedHandler(func(*nats.Conn) { c.shut("the connection to NATS was closed") }),
	}
	opts = append(opts, Auth(cfg.Token, cfg.TLS, cfg.CredsFile)...)
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	nc := cfg.Conn
	if nc == nil {
		var err error
		if nc, err = nats.Connect(url, opts...); err != nil {
			return nil, ConnectError(url, err)
		}
	} else {
		nc.SetDisconnectErrHandler(func(*nats.Conn, error) { c.disconnected() })
		nc.SetReconnectHandler(func(*nats.Conn) { c.setConnected(true) })
		nc.SetClosedHandler(func(*nats.Conn) { c.shut("the connection to NATS was closed") })
	}
	c.nc = nc
	c.id = nats.NewInbox()[len(nats.InboxPrefix):]
	c.inbox = nats.InboxPrefix + c.id
	sub := func(subject string, h nats.MsgHandler) error {
		s, err := nc.Subscribe(subject, h)
		if err == nil {
			c.subs = append(c.subs, s)
		}
		return err
	}
	if err := sub(c.inbox, c.answer); err != nil {
		c.hangUp()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "subscribe to the client's inbox: %v", err)
	}
	if err := sub(c.subj.Heartbeats(), func(m *nats.Msg) { c.status(m.Data) }); err != nil {
		c.hangUp()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "subscribe to heartbeats: %v", err)
	}
	if err := nc.PublishRequest(c.subj.Ping(), c.inbox, nil); err != nil {
		c.hangUp()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "ping the cluster: %v", err)
	}
	if err := c.discover(ctx, discoverWait, discoverSettle); err != nil {
		c.hangUp()
		return nil, protocol.AsError(err)
	}
	go c.watch()
	return c, nil
}

// discover waits for the nodes to answer the client's ping: for the
// first, then settle for the others, and then for every node an answer
// names as a peer, all within wait. A node's answer can come late on a
// busy machine; the peers named are what makes a client that has
// connected know every node another node knows.
func (c *Client) discover(ctx context.Context, wait, settle time.Duration) error {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	select {
	case <-c.heard:
	case <-deadline.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	settling := time.NewTimer(settle)
	defer settling.Stop()
	settled := false
	for !settled || !c.heardPeers() {
		select {
		case <-settling.C:
			settled = true
		case <-c.news:
		case <-deadline.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// heardPeers reports whether every peer a known node names is known.
func (c *Client) heardPeers() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		for _, p := range n.st.Peers {
			if c.nodes[p] == nil {
				return false
			}
		}
	}
	return true
}

// ConnectError types a failure to connect to NATS at url: NATS refusing
// the credentials is CodePermissionDenied, a refusal rather than an outage
// to retry; a credentials file that cannot be read or parsed is
// CodeInvalidArgument; anything else is CodeUnavailable.
func ConnectError(url string, err error) *protocol.Error {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired), strings.Contains(strings.ToLower(err.Error()), "authorization violation"):
		return protocol.Errorf(protocol.CodePermissionDenied, "the cluster's NATS at %s refused the credentials: %v", url, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission), errors.Is(err, nats.ErrNoUserCB),
		strings.Contains(err.Error(), "nkeys: "):
		return protocol.Errorf(protocol.CodeInvalidArgument, "the NATS credentials file cannot be used: %v", err)
	}
	return protocol.Errorf(protocol.CodeUnavailable, "cannot reach the cluster's NATS at %s: %v", url, err)
}

// Auth is the nats.go options for a token, a TLS configuration and a
// credentials file, each when given.
func Auth(token string, tc *tls.Config, credsFile string) []nats.Option {
	var opts []nats.Option
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc.Clone()))
	}
	if credsFile != "" {
		opts = append(opts, nats.UserCredentials(credsFile))
	}
	return opts
}

// Close tells the nodes this client is gone and closes the connection.
// Requests still waiting fail.
func (c *Client) Close() error {
	m := nats.NewMsg(c.subj.Bye())
	m.Header.Set(HdrClient, c.id)
	_ = c.nc.PublishMsg(m)
	_ = c.nc.FlushTimeout(time.Second)
	c.hangUp()
	c.shut("the cluster runtime is closed")
	return nil
}

// hangUp closes the connection, or, when it is borrowed, the client's
// subscriptions on it.
func (c *Client) hangUp() {
	if c.cfg.Conn == nil {
		c.nc.Close()
		return
	}
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// shut fails every waiting request and stops the loss watch, once.
func (c *Client) shut(why string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	ps := c.pending
	c.pending = make(map[uint64]*pending)
	close(c.done)
	c.end()
	c.mu.Unlock()
	for _, p := range ps {
		p.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "%s", why))
	}
}

// disconnected fails the requests waiting, as a daemon's connection that
// is lost does: NATS keeps no answer sent to a client while it is away, so
// they might otherwise wait for ever, and whether they ran is unknown. (A
// client whose own NATS server was on a node that died sees its requests
// to that node fail so too, and the later ones fail with CodeNodeLost.)
func (c *Client) disconnected() {
	c.setConnected(false)
	c.mu.Lock()
	ps := c.pending
	c.pending = make(map[uint64]*pending)
	c.mu.Unlock()
	for _, p := range ps {
		p.finish(nil, protocol.Errorf(protocol.CodeUnavailable, "lost the connection to the cluster's NATS during the request to node %s: whether it ran is unknown", p.at.node))
	}
}

// setConnected suspends loss detection while the client itself is cut
// off: silence then says nothing of the nodes. Back in touch, every node
// gets a fresh LostAfter to be heard from.
func (c *Client) setConnected(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connected = up
	if up {
		now := time.Now()
		for _, n := range c.nodes {
			n.seen = now
		}
	}
}

// status records a node's heartbeat or its answer to a ping.
func (c *Client) status(data []byte) {
	var st Status
	if err := msgpack.Unmarshal(data, &st); err != nil || st.Name == "" {
		return
	}
	c.mu.Lock()
	if c.lost[st.Instance] {
		// A lost instance's interpreters are gone; it comes back, if at
		// all, as a new instance once it has fenced itself.
		c.mu.Unlock()
		return
	}
	var failed []*pending
	n := c.nodes[st.Name]
	if st.Leaving {
		if n != nil && n.st.Instance == st.Instance {
			failed = c.loseLocked(n.st)
		}
		c.lost[st.Instance] = true
		c.mu.Unlock()
		failLost(failed, st.Name)
		return
	}
	if n != nil && n.st.Instance != st.Instance {
		// The node restarted: what ran in its earlier instance is gone.
		failed = c.loseLocked(n.st)
		n = nil
	}
	if n == nil {
		n = &nodeState{}
		c.nodes[st.Name] = n
	}
	n.st, n.seen = st, time.Now()
	// A heartbeat sent before a create landed reaches the client after
	// it as often as not; it counts only the IDs up to its LastID.
	n.placed = slices.DeleteFunc(n.placed, func(id int64) bool { return id <= st.LastID })
	c.mu.Unlock()
	c.heardOnce.Do(func() { close(c.heard) })
	select {
	case c.news <- struct{}{}:
	default:
	}
	failLost(failed, st.Name)
}

// loseLocked declares an instance lost and returns its waiting requests.
func (c *Client) loseLocked(st Status) []*pending {
	c.lost[st.Instance] = true
	if n := c.nodes[st.Name]; n != nil && n.st.Instance == st.Instance {
		delete(c.nodes, st.Name)
	}
	var failed []*pending
	for id, p := range c.pending {
		if p.at.id == st.Instance {
			failed = append(failed, p)
			delete(c.pending, id)
		}
	}
	return failed
}

func failLost(ps []*pending, node string) {
	for _, p := range ps {
		p.finish(nil, nodeLost(node, 0))
	}
}

func nodeLost(node string, id int64) *protocol.Error {
	msg := fmt.Sprintf("cluster node %s was lost", node)
	if id != 0 {
		msg = fmt.Sprintf("interpreter %d: cluster node %s was lost", id, node)
	}
	return &protocol.Error{Code: protocol.CodeNodeLost, Msg: msg, InterpreterID: id}
}

// watch declares lost the nodes not heard from for LostAfter.
func (c *Client) watch() {
	t := time.NewTicker(lossCheck)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if !c.connected {
			c.mu.Unlock()
			continue
		}
		type loss struct {
			node string
			ps   []*pending
		}
		var losses []loss
		for _, n := range c.nodes {
			if time.Since(n.seen) > LostAfter {
				losses = append(losses, loss{n.st.Name, c.loseLocked(n.st)})
			}
		}
		c.mu.Unlock()
		for _, l := range losses {
			failLost(l.ps, l.node)
		}
	}
}

// answer handles every message to the client's inbox, on one goroutine,
// so a request's notifications are handed on before its answer.
func (c *Client) answer(m *nats.Msg) {
	switch m.Header.Get(HdrKind) {
	case KindStatus:
		c.status(m.Data)
		return
	case KindNote:
		if c.cfg.Notify != nil {
			c.cfg.Notify(m.Header.Get(HdrNode), m.Header.Get(HdrMethod), m.Data)
		}
		return
	case KindCall:
		go c.serve(m)
		return
	}
	call, err := strconv.ParseUint(m.Header.Get(HdrCall), 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	p := c.pending[call]
	delete(c.pending, call)
	c.mu.Unlock()
	if p == nil {
		return // abandoned, or failed by a loss
	}
	if m.Header.Get(HdrKind) == KindErr {
		var e protocol.Error
		if err := msgpack.Unmarshal(m.Data, &e); err != nil {
			p.finish(nil, protocol.Errorf(protocol.CodeProtocol, "malformed error from node %s: %v", p.at.node, err))
			return
		}
		p.finish(nil, &e)
		return
	}
	p.finish(m.Data, nil)
}

// serve answers a node's request with ClientConfig.Serve. The node bounds
// the request itself (its params carry the deadline); closing the client
// ends it too.
func (c *Client) serve(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	var res any
	err := error(protocol.Errorf(protocol.CodeProtocol, "this client serves no %q", m.Header.Get(HdrMethod)))
	if m.Header.Get(HdrMethod) == MethodPing {
		err = nil // here
	} else if c.cfg.Serve != nil {
		res, err = c.cfg.Serve(c.life, m.Header.Get(HdrNode), m.Header.Get(HdrMethod), m.Data)
	}
	r := nats.NewMsg(m.Reply)
	if err == nil {
		if r.Data, err = msgpack.Marshal(res); err != nil {
			err = protocol.Errorf(protocol.CodeProtocol, "encode the answer: %v", err)
		}
	}
	if err != nil {
		r.Header.Set(HdrKind, KindErr)
		r.Data, _ = msgpack.Marshal(protocol.AsError(err))
	} else {
		r.Header.Set(HdrKind, KindOK)
	}
	_ = c.nc.PublishMsg(r)
}

// Request sends one control request to node and waits for its answer: the
// msgpack result, or a *protocol.Error. A cancelled ctx cancels the
// request on the node and still waits, boundedly, for the node's answer,
// which then says what happened. If the node is lost first, the request
// fails with protocol.CodeNodeLost.
func (c *Client) Request(ctx context.Context, node, method string, params any) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, protocol.AsError(err)
	}
	body, err := msgpack.Marshal(params)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "%s: encode params: %v", method, err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the cluster runtime is closed")
	}
	n := c.nodes[node]
	if n == nil {
		c.mu.Unlock()
		return nil, nodeLost(node, 0)
	}
	c.nextCall++
	call := c.nextCall
	p := &pending{at: instance{node, n.st.Instance}, done: make(chan struct{})}
	c.pending[call] = p
	c.mu.Unlock()

	m := nats.NewMsg(c.subj.RPC(node))
	m.Reply = c.inbox
	m.Header.Set(HdrMethod, method)
	m.Header.Set(HdrCall, strconv.FormatUint(call, 10))
	m.Header.Set(HdrClient, c.id)
	m.Data = body
	if err := c.nc.PublishMsg(m); err != nil {
		c.drop(call)
		return nil, protocol.Errorf(protocol.CodeUnavailable, "send %s to node %s: %v", method, node, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		cm := nats.NewMsg(c.subj.Cancel(node))
		cm.Header.Set(HdrClient, c.id)
		cm.Header.Set(HdrCall, strconv.FormatUint(call, 10))
		_ = c.nc.PublishMsg(cm)
		t := time.NewTimer(cancelWait)
		select {
		case <-p.done:
		case <-t.C:
			c.drop(call)
			p.finish(nil, protocol.AsError(ctx.Err()))
		}
		t.Stop()
	}
	return p.res, p.err
}

func (c *Client) drop(call uint64) {
	c.mu.Lock()
	delete(c.pending, call)
	c.mu.Unlock()
}

// Nodes returns the live nodes, by name.
func (c *Client) Nodes() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.nodes))
	for _, n := range c.nodes {
		st := n.st
		st.Interpreters += len(n.placed)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Live reports whether node is a live node.
func (c *Client) Live(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[node] != nil
}

// load is what placement goes by: the interpreters a node last reported,
// those this client created there since, and its creates in flight.
func (n *nodeState) load() int { return n.st.Interpreters + len(n.placed) + n.inflight }

// PlaceLeastLoaded picks the live node with the least load (the first by
// name of equals) and counts a create in flight there at once, so
// concurrent creates spread rather than all pick the node that looked
// least loaded before any of them landed. "" when no node is live. Every
// pick is followed by Landed.
func (c *Client) PlaceLeastLoaded() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *nodeState
	for _, n := range c.nodes {
		if best == nil || n.load() < best.load() || n.load() == best.load() && n.st.Name < best.st.Name {
			best = n
		}
	}
	if best == nil {
		return ""
	}
	best.inflight++
	return best.st.Name
}

// Placing counts a create in flight on node, chosen by other means than
// its load; Landed follows.
func (c *Client) Placing(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[node]; n != nil {
		n.inflight++
	}
}

// Landed ends a create counted by PlaceLeastLoaded or Placing; id is the
// interpreter created, 0 when the create failed. A created interpreter
// counts on its node until a heartbeat of the node counts it.
func (c *Client) Landed(node string, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[node]
	if n == nil {
		return
	}
	if n.inflight > 0 {
		n.inflight--
	}
	// A heartbeat that came between the node's answer and this call
	// counted the interpreter already.
	if id > n.st.LastID {
		n.placed = append(n.placed, id)
	}
}

// Record notes that interpreter or queue id lives on node (its current
// instance).
func (c *Client) Record(id int64, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[node]; n != nil {
		c.located[id] = instance{node, n.st.Instance}
	}
}

// Forget drops what the client knows of where id lives.
func (c *Client) Forget(id int64) {
	c.mu.Lock()
	delete(c.located, id)
	c.mu.Unlock()
}

// Where says where id was last seen: its node, and whether that node's
// instance was lost since. ok is false when the client does not know.
func (c *Client) Where(id int64) (node string, lost, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.located[id]
	if !ok {
		return "", false, false
	}
	return at.node, c.lost[at.id] || c.nodes[at.node] == nil || c.nodes[at.node].st.Instance != at.id, true
}

// Queues reaches the cluster's queues over the client's connection.
func (c *Client) Queues() (*Queues, error) { return NewQueues(c.nc, c.cfg.Cluster, 0) }

// NodeLost is the error of a request to interpreter id on a lost node.
func NodeLost(node string, id int64) *protocol.Error { return nodeLost(node, id) }
