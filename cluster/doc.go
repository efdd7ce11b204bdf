// Package cluster is what a client needs to drive a cluster of subinterp
// daemons over NATS: the subjects, the node status, and Client, which
// interpreters.Dial("nats://…") builds its runtime on. It imports nats.go
// only; the daemon side, which embeds nats-server, is the node
// subpackage, so a program that only uses interpreters never links a
// NATS server. The supervisor and the worker know nothing of NATS.
//
// A cluster call, end to end (C is the cluster name, N the node, X the
// client's inbox):
//
//	client process                     NATS                    node N (a daemon)
//	──────────────                     ────                    ─────────────────
//	Interpreter.CallContext
//	 → Runtime → clusterBackend
//	   (where does interpreter 7 live?
//	    cached, else ask every node)
//	 → remoteBackend of N (builds the
//	   same params as for one daemon)
//	 → Client.Request ── PUB C.node.N.rpc ──────────────────→ Node.serveRequest
//	     headers: method, call, client                          → daemon.Session.Handle
//	     reply: X                                                 (the daemon's own handlers)
//	                                                            → supervisor.Call
//	                                                            → protocol → worker → gopher-lua
//	   answer(): one goroutine ←─ PUB X kind=note (output) ──── output, as the call prints
//	   reads X in order        ←─ PUB X kind=ok|err, call ───── the answer, after its output
//	 ← result, or *protocol.Error
//
//	ctx cancelled:            ── PUB C.node.N.cancel ─────────→ cancels that request's context
//	every second:             ←─ PUB C.hb.N (Status) ───────── heartbeat with the node's load
//	Connect / Close:          ── PUB C.ping / C.bye ──────────→ answer with Status / release
//	                                                              the client's queue references
//	node stops:               ←─ PUB C.hb.N (Leaving) ──────── lost at once
//	every 5 s:                ←─ REQ X (cluster.ping) ───────── "no responders": the client
//	                                                              is gone, release its session
//
// A node not heard from for LostAfter is lost: its requests in flight and
// every later request to its interpreters fail with protocol.CodeNodeLost
// (interpreters.ErrNodeLost), and it leaves the node list. A node that
// cannot confirm for FenceAfter that it is still in the cluster closes its
// own interpreters (see the node package), so nothing the cluster counts
// as lost runs on.
//
// Connect pings the cluster and waits for the answers: the first, those
// that come soon after, and then every node an answer names among its
// peers (Status.Peers), so a client that has connected knows every node
// the nodes know, however late their answers come on a busy machine.
//
// Lua code sees the whole cluster too: a node is a client of the others
// on its own connection (node.Peers, made when the node starts to serve),
// so list_all in an interpreter on N asks every other node for its list,
// and a handle on an interpreter of M sends exec, call, prepare_main,
// is_running and close to M as a client would; the output of that code
// comes back to N as the client's notifications and goes where the
// calling code's goes.
// A queue handed over in a call's arguments is the same queue there, as
// every queue of a cluster lives in JetStream.
//
// Requests are plain core-NATS messages rather than nats.go's micro
// services: a call's output must reach the client before its answer, on
// one ordered path, and a node must be able to ask the client back (host
// functions) and to be told of a cancellation; micro's one-request,
// one-reply endpoints give none of these, and its discovery is polling,
// where heartbeats are needed anyway for loss detection.
//
// Queues are the cluster's: a node creates one (its ID comes from the
// same cluster counter as interpreters', so it is cluster-unique) and
// every queue lives in Queues (queue.go), a JetStream work-queue stream
// per queue, one durable consumer shared by every getter (MaxAckPending 1
// for FIFO), DiscardNew and MaxMsgs for maxsize, items carrying their
// putter and its node in headers. A node's supervisor reaches it through
// the supervisor.QueueStore the node plugs in (the supervisor knows no
// NATS); a client reaches it directly over its own connection:
//
//	interpreter (Lua q:get())                  client (Queue.Get)
//	 → worker → protocol → supervisor           → clusterBackend
//	 → QueueStore of node N (node package)      → Queues.Receive
//	 → Queues.ReceiveToHand ─ PULL C_q_ID/getters → JetStream (replicas)
//	   ← the item, once stored ───────────────── (a waiting pull is
//	                                               answered on store)
//	   ── with replicas: CREATE key in the ────→ KV C_claims (only one
//	      claims bucket, naming N's claimant      get's write succeeds;
//	      subject (a client's get: beside the     a claim whose claimant
//	      ACK, naming none)                       is gone is taken over)
//	   item put by an interpreter of node M:
//	   ── REQ C.node.M.alive ──────────────────→ node M: does it live?
//	 ← supervisor writes the item to the worker
//	   ── ACK, confirmed; PUB C.q.ID.taken ───→ JetStream
//	 the worker's next request is read only now
//
// A queue's stream is never deleted by the cluster: handles to it are
// spread over clients and nodes that nothing counts, and deleting it
// under one of them would lose its items. Remove it from JetStream to end
// it.
//
// Who may do what: anyone who can publish on C.node.N.rpc can create
// interpreters on N and run any code in any of N's interpreters with the
// daemon's privileges, read their output (by naming their own inbox) and
// close them; anyone who can subscribe to C.> sees every request, answer
// and output of the cluster. So NATS access is the whole of the access
// control: give the cluster's subjects only to users you would let run
// code as the daemons' user, and use TLS and credentials (token, user or
// creds file) on every address other machines can reach — a node refuses
// to join or listen otherwise. NATS accounts and subject permissions can
// narrow who reaches which cluster (C.>) on a shared deployment.
package cluster
