package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/cluster"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/protocol"
)

// Bounded waits of a node.
const (
	// connectWait bounds joining NATS.
	connectWait = 10 * time.Second
	// leaseCheck is how often the node checks it is still part of the
	// cluster; leaseFlush bounds the round trip to its NATS server.
	leaseCheck = 250 * time.Millisecond
	leaseFlush = 500 * time.Millisecond
	// answerWait bounds the wait, at the end, for the answers of requests
	// in progress to go out before the connection closes.
	answerWait = 5 * time.Second
	// flushWait bounds the flush of an answer that must be known sent (a
	// queue's item).
	flushWait = 2 * time.Second
	// probeEvery is how often the node asks whether its clients are still
	// there; probeWait bounds one asking.
	probeEvery = 5 * time.Second
	probeWait  = 2 * time.Second
)

// Node is a daemon's membership of a cluster: its NATS connection (and
// embedded server, if it runs one), the IDs it hands out, and, once Serve
// runs, the subjects on which it serves its daemon's interpreters.
type Node struct {
	cfg  Config
	log  hclog.Logger
	subj cluster.Subjects
	ns   *server.Server // the embedded server, or nil
	nc   *nats.Conn
	ids  *ids
	// store keeps the daemon's queues in JetStream, for the cluster.
	store *queueStore
	// peers reaches the other nodes' interpreters for Lua code.
	peers *peers

	started time.Time

	mu       sync.Mutex
	instance string
	sessions map[string]*session // by client
	calls    map[string]context.CancelFunc
	answers  sync.WaitGroup
}

// Join starts the embedded NATS server if the config asks for one,
// connects to NATS and returns the Node. Nothing is served until Serve.
func Join(cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger, subj: cluster.Subjects{Cluster: cfg.Cluster}, started: time.Now(),
		instance: nuid.Next(), sessions: make(map[string]*session), calls: make(map[string]context.CancelFunc),
	}
	n.peers = &peers{n: n, outs: make(map[int64]io.Writer)}
	opts := []nats.Option{
		nats.Name("subinterp node " + cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(connectWait),
	}
	url := cfg.URL
	if cfg.Embed != "" {
		n.ns, err = startServer(cfg)
		if err != nil {
			return nil, err
		}
		// In-process: no TLS (the connection never leaves the process,
		// and its URL names no host a certificate could be for), but the
		// same credentials as everyone.
		opts = append(opts, nats.InProcessServer(n.ns))
		opts = append(opts, cluster.Auth(cfg.Token, nil, cfg.CredsFile)...)
		url = ""
	} else {
		opts = append(opts, cluster.Auth(cfg.Token, cfg.TLS, cfg.CredsFile)...)
	}
	n.nc, err = nats.Connect(url, opts...)
	if err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("join NATS at %s: %w", n.where(), cluster.ConnectError(n.where(), err))
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("JetStream: %v", err)
	}
	n.ids = &ids{js: js, bucket: n.subj.IDBucket(), replicas: cfg.Replicas}
	qs, err := cluster.NewQueues(n.nc, cfg.Cluster, cfg.Replicas)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("JetStream: %v", err)
	}
	n.store = &queueStore{qs: qs, node: cfg.Name}
	return n, nil
}

func (n *Node) where() string {
	if n.ns != nil {
		return n.ns.ClientURL()
	}
	return n.cfg.URL
}

// ClientURL is the address clients dial to reach the embedded server;
// empty without one.
func (n *Node) ClientURL() string {
	if n.ns == nil {
		return ""
	}
	return n.ns.ClientURL()
}

// RouteURL is the address other embedded servers route to; empty without
// routes.
func (n *Node) RouteURL() string {
	if n.ns == nil || n.cfg.RouteListen == "" {
		return ""
	}
	return "nats://" + n.ns.ClusterAddr().String()
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// NextID gives the next cluster-unique ID: the daemon's supervisor takes
// every interpreter's ID from it (daemon.Config.Supervisor.NextID).
func (n *Node) NextID(ctx context.Context) (int64, error) { return n.ids.Next(ctx) }

// Serve serves d's interpreters to the cluster until ctx ends: requests
// on the node's subjects go to d's handlers, heartbeats go out every
// cluster.HeartbeatInterval, and a node that cannot confirm for
// cluster.FenceAfter that it is still part of the cluster closes its
// interpreters. Close the Node after Serve and d's Serve have returned.
func (n *Node) Serve(ctx context.Context, d *daemon.Server) error {
	var subs []*nats.Subscription
	sub := func(subject string, h nats.MsgHandler) error {
		s, err := n.nc.Subscribe(subject, h)
		if err == nil {
			subs = append(subs, s)
		}
		return err
	}
	n.store.qs.SetLocal(n.cfg.Name, d.Exists)
	rpc, err := subscribeDispatched(ctx, n.nc, n.subj.RPC(n.cfg.Name), func(m *nats.Msg) { n.serveRequest(ctx, d, m) })
	if err != nil {
		return err
	}
	subs = append(subs, rpc)
	if err := sub(n.subj.Alive(n.cfg.Name), func(m *nats.Msg) { n.answerAlive(d, m) }); err != nil {
		return err
	}
	if err := sub(n.subj.Cancel(n.cfg.Name), n.cancel); err != nil {
		return err
	}
	if err := sub(n.subj.Bye(), n.bye); err != nil {
		return err
	}
	if err := sub(n.subj.Ping(), func(m *nats.Msg) { n.answerPing(d, m) }); err != nil {
		return err
	}
	if err := n.nc.Flush(); err != nil {
		return err
	}
	n.log.Info("joined the cluster", "cluster", n.cfg.Cluster, "nats", n.where())
	n.heartbeat(d)
	if _, err := n.peers.client(ctx); err != nil {
		// Made again at its first use.
		n.log.Warn("cannot watch the other nodes yet", "err", err)
	}

	beat := time.NewTicker(cluster.HeartbeatInterval)
	defer beat.Stop()
	lease := time.NewTicker(leaseCheck)
	defer lease.Stop()
	probe := time.NewTicker(probeEvery)
	defer probe.Stop()
	lastGood := time.Now()
	fenced := false
	for {
		select {
		case <-ctx.Done():
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			n.closeSessions()
			return nil
		case <-beat.C:
			if !fenced {
				n.heartbeat(d)
			}
		case <-probe.C:
			n.probeSessions()
		case <-lease.C:
			if n.member() {
				lastGood = time.Now()
				if fenced {
					fenced = false
					n.log.Info("back in touch with the cluster", "instance", n.currentInstance())
					n.heartbeat(d)
				}
				continue
			}
			if !fenced && time.Since(lastGood) > cluster.FenceAfter {
				fenced = true
				n.fence(d)
			}
		}
	}
}

// member reports whether the node can still count itself part of the
// cluster: its NATS server answers a round trip, and an embedded server
// that has peers still has a route to one. (An embedded node's own
// connection is in-process and stays up through any partition, so the
// routes are what tells.)
func (n *Node) member() bool {
	if !n.nc.IsConnected() || n.nc.FlushTimeout(leaseFlush) != nil {
		return false
	}
	return n.ns == nil || len(n.cfg.Routes) == 0 || n.ns.NumRoutes() > 0
}

// fence closes every interpreter: by now the cluster has declared the
// node lost, or will before the node could tell it otherwise. The node
// comes back, if it does, as a new instance with none of them.
func (n *Node) fence(d *daemon.Server) {
	n.mu.Lock()
	n.instance = nuid.Next()
	n.mu.Unlock()
	closed := d.CloseInterpreters()
	n.log.Warn("cut off from the cluster: closed every interpreter", "after", cluster.FenceAfter, "closed", closed)
}

func (n *Node) currentInstance() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.instance
}

func (n *Node) status(d *daemon.Server) []byte {
	count, last := d.Census()
	b, _ := msgpack.Marshal(&cluster.Status{
		Name: n.cfg.Name, Instance: n.currentInstance(), Interpreters: count, LastID: last,
		Pid: os.Getpid(), StartedNano: n.started.UnixNano(), Peers: n.peers.names(),
	})
	return b
}

func (n *Node) heartbeat(d *daemon.Server) {
	_ = n.nc.Publish(n.subj.Heartbeat(n.cfg.Name), n.status(d))
}

func (n *Node) answerPing(d *daemon.Server, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	r := nats.NewMsg(m.Reply)
	r.Header.Set(cluster.HdrKind, cluster.KindStatus)
	r.Data = n.status(d)
	_ = n.nc.PublishMsg(r)
}

// session is the daemon session of one client, made on its first request.
func (n *Node) session(d *daemon.Server, client, inbox string) *daemon.Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.sessions[client]; s != nil {
		return s.ss
	}
	ci := &clientInbox{n: n, inbox: inbox}
	s := &session{ss: d.NewSession("cluster client "+client, ci), ci: ci}
	n.sessions[client] = s
	return s.ss
}

// session is a client's daemon session and the way to reach the client.
type session struct {
	ss *daemon.Session
	ci *clientInbox
}

// probeSessions releases the sessions of clients that are gone without
// a goodbye (a process that ended without closing its runtime): a
// request to a client's inbox that no one listens on any more is told so
// by NATS at once, where a live client answers. Their queue references
// go, as a socket connection's do when it closes.
func (n *Node) probeSessions() {
	n.mu.Lock()
	all := make(map[string]*session, len(n.sessions))
	for c, s := range n.sessions {
		all[c] = s
	}
	n.mu.Unlock()
	for client, s := range all {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), probeWait)
			defer cancel()
			if !s.ci.gone(ctx) {
				return
			}
			n.mu.Lock()
			if n.sessions[client] == s {
				delete(n.sessions, client)
			} else {
				s = nil
			}
			n.mu.Unlock()
			if s != nil {
				n.log.Debug("a client is gone without a goodbye: released its session", "client", client)
				s.ss.Close()
			}
		}()
	}
}

// clientInbox reaches a client through its inbox.
type clientInbox struct {
	n     *Node
	inbox string
}

func (c *clientInbox) msg(kind, method string, params any) (*nats.Msg, error) {
	body, err := msgpack.Marshal(params)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(c.inbox)
	m.Header.Set(cluster.HdrKind, kind)
	m.Header.Set(cluster.HdrNode, c.n.cfg.Name)
	m.Header.Set(cluster.HdrMethod, method)
	m.Data = body
	return m, nil
}

func (c *clientInbox) Notify(method string, params any) error {
	m, err := c.msg(cluster.KindNote, method, params)
	if err != nil {
		return err
	}
	return c.n.nc.PublishMsg(m)
}

// gone reports whether no one listens on the client's inbox any more.
// Only NATS's "no responders" says so: a slow answer, or none, is no
// proof.
func (c *clientInbox) gone(ctx context.Context) bool {
	m, err := c.msg(cluster.KindCall, cluster.MethodPing, nil)
	if err != nil {
		return false
	}
	_, err = c.n.nc.RequestMsgWithContext(ctx, m)
	return errors.Is(err, nats.ErrNoResponders)
}

// Call asks the client and waits for its answer, on an inbox of the
// node's. A client that is gone has no subscription left: NATS says so at
// once.
func (c *clientInbox) Call(ctx context.Context, method string, params any) ([]byte, error) {
	m, err := c.msg(cluster.KindCall, method, params)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "%s: encode params: %v", method, err)
	}
	r, err := c.n.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, protocol.Errorf(protocol.CodeClosed, "the client is gone")
	case err != nil && ctx.Err() != nil:
		return nil, protocol.AsError(ctx.Err())
	case err != nil:
		return nil, protocol.Errorf(protocol.CodeClosed, "no answer from the client: %v", err)
	}
	if r.Header.Get(cluster.HdrKind) == cluster.KindErr {
		var e protocol.Error
		if err := msgpack.Unmarshal(r.Data, &e); err != nil {
			return nil, protocol.Errorf(protocol.CodeProtocol, "malformed error from the client: %v", err)
		}
		return nil, &e
	}
	return r.Data, nil
}

// serveRequest runs one request through the daemon's handlers, on the
// goroutine the dispatcher gave it, and sends the answer after the
// notifications the handler sent: both go out on the one connection in
// that order, and the client reads its inbox on one goroutine, so output
// arrives before the answer.
func (n *Node) serveRequest(ctx context.Context, d *daemon.Server, m *nats.Msg) {
	client, call, method := m.Header.Get(cluster.HdrClient), m.Header.Get(cluster.HdrCall), m.Header.Get(cluster.HdrMethod)
	if m.Reply == "" || client == "" || call == "" {
		return
	}
	ss := n.session(d, client, m.Reply)
	key := client + "/" + call
	rctx, cancel := context.WithCancel(ctx)
	n.mu.Lock()
	n.calls[key] = cancel
	n.answers.Add(1)
	n.mu.Unlock()
	func() {
		defer n.answers.Done()
		defer func() {
			n.mu.Lock()
			delete(n.calls, key)
			n.mu.Unlock()
			cancel()
		}()
		res, err := ss.Handle(rctx, method, m.Data)
		_, settles := res.(*protocol.Then)
		res, after := protocol.Unwrap(res)
		sent := false
		defer func() { after(sent) }()
		r := nats.NewMsg(m.Reply)
		r.Header.Set(cluster.HdrCall, call)
		if err == nil {
			if r.Data, err = msgpack.Marshal(res); err != nil {
				err = protocol.Errorf(protocol.CodeProtocol, "%s: encode the answer: %v", method, err)
			}
		}
		if err != nil {
			r.Header.Set(cluster.HdrKind, cluster.KindErr)
			r.Data, _ = msgpack.Marshal(protocol.AsError(err))
		} else {
			r.Header.Set(cluster.HdrKind, cluster.KindOK)
		}
		perr := n.nc.PublishMsg(r)
		if perr == nil && settles {
			// What must be known sent is known sent once NATS has it,
			// not while it waits in this process's buffer.
			perr = n.nc.FlushTimeout(flushWait)
		}
		sent = perr == nil && err == nil
		if perr != nil {
			r.Header.Set(cluster.HdrKind, cluster.KindErr)
			r.Data, _ = msgpack.Marshal(protocol.Errorf(protocol.CodeProtocol, "%s: the answer could not be sent: %v", method, perr))
			_ = n.nc.PublishMsg(r)
		}
	}()
}

func (n *Node) cancel(m *nats.Msg) {
	key := m.Header.Get(cluster.HdrClient) + "/" + m.Header.Get(cluster.HdrCall)
	n.mu.Lock()
	cancel := n.calls[key]
	n.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// bye releases what a client that has gone held.
func (n *Node) bye(m *nats.Msg) {
	client := m.Header.Get(cluster.HdrClient)
	n.mu.Lock()
	s := n.sessions[client]
	delete(n.sessions, client)
	n.mu.Unlock()
	if s != nil {
		s.ss.Close()
	}
}

func (n *Node) closeSessions() {
	n.mu.Lock()
	ss := n.sessions
	n.sessions = make(map[string]*session)
	n.mu.Unlock()
	for _, s := range ss {
		s.ss.Close()
	}
}

// Close waits, boundedly, for the answers of requests in progress to go
// out, tells the cluster the node is leaving, then leaves NATS and stops
// the embedded server.
func (n *Node) Close() {
	done := make(chan struct{})
	go func() {
		n.answers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(answerWait):
	}
	n.peers.close()
	if n.nc != nil {
		// The last word: clients count the node lost now, not after
		// LostAfter of silence. Answers of requests still in flight
		// went out above.
		b, _ := msgpack.Marshal(&cluster.Status{Name: n.cfg.Name, Instance: n.currentInstance(), Leaving: true})
		_ = n.nc.Publish(n.subj.Heartbeat(n.cfg.Name), b)
		_ = n.nc.FlushTimeout(time.Second)
		n.nc.Close()
	}
	n.shutdownServer()
}

func (n *Node) shutdownServer() {
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
}
