package cluster

import "fmt"

// DefaultName is the cluster name when none is given. Every subject a
// cluster uses starts with its name, so several clusters can share one
// NATS deployment.
const DefaultName = "subinterp"

// Headers of the messages a client and a node exchange (exported for the
// node package, which serves what this package sends). JetStream reserves
// the "Nats-" prefix; these stay clear of it.
const (
	HdrMethod = "Subinterp-Method" // a request's control method, or a notification's
	HdrCall   = "Subinterp-Call"   // the client's number for the request an answer is for
	HdrClient = "Subinterp-Client" // the client a request, cancel or goodbye comes from
	HdrKind   = "Subinterp-Kind"   // what a message to a client's inbox is: KindOK, KindErr, KindNote, KindStatus
	HdrNode   = "Subinterp-Node"   // the node a notification comes from
)

// Kinds of the messages a node sends to a client's inbox.
const (
	KindOK     = "ok"     // a request's result: its msgpack answer
	KindErr    = "err"    // a request's failure: a msgpack protocol.Error
	KindNote   = "note"   // a notification (output, restart), ahead of the answer it precedes
	KindStatus = "status" // a node's Status, in answer to a ping
	KindCall   = "call"   // a node's request of the client (a host function call), answered on its reply subject
)

// MethodPing is a node's request to a client that only asks whether it
// is still there.
const MethodPing = "cluster.ping"

// CheckName refuses a cluster or node name that cannot be one subject
// token and part of a JetStream bucket name. (No regexp: this package's
// init runs in every worker process.)
func CheckName(what, name string) error {
	ok := len(name) >= 1 && len(name) <= 64
	for _, r := range name {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}
	if !ok {
		return fmt.Errorf("%s name %q: want 1 to 64 letters, digits, '-' or '_'", what, name)
	}
	return nil
}

// Subjects names the subjects of one cluster.
type Subjects struct{ Cluster string }

// RPC is where node receives requests.
func (s Subjects) RPC(node string) string { return s.Cluster + ".node." + node + ".rpc" }

// Cancel is where node receives the cancellation of a request.
func (s Subjects) Cancel(node string) string { return s.Cluster + ".node." + node + ".cancel" }

// Alive is where node answers whether one of its interpreters lives (its
// ID, in decimal; the answer "1" or "0"), for the unbound modes of the
// items it put.
func (s Subjects) Alive(node string) string { return s.Cluster + ".node." + node + ".alive" }

// Heartbeat is where node publishes its Status every HeartbeatInterval.
func (s Subjects) Heartbeat(node string) string { return s.Cluster + ".hb." + node }

// Heartbeats matches every node's heartbeat.
func (s Subjects) Heartbeats() string { return s.Cluster + ".hb.*" }

// Ping asks every node for its Status at once.
func (s Subjects) Ping() string { return s.Cluster + ".ping" }

// Bye tells every node a client has gone, so they release what it held.
func (s Subjects) Bye() string { return s.Cluster + ".bye" }

// IDBucket is the JetStream key-value bucket that shares out ID blocks.
func (s Subjects) IDBucket() string { return s.Cluster + "_ids" }

// Claimant is where the process that made claims under id answers whether
// it still holds the item of a claim (see Queues).
func (s Subjects) Claimant(id string) string { return s.Cluster + ".claimant." + id }
