package cluster

import "time"

// Timing of liveness. A node publishes its Status every HeartbeatInterval;
// an observer that has heard nothing from it for LostAfter declares it
// lost; a node that could not confirm it is still part of the cluster for
// FenceAfter closes its own interpreters. FenceAfter is at most LostAfter
// plus a heartbeat, so by the time every observer has declared a node lost
// it has fenced itself too, and both stay well inside the 10 s the
// contract allows.
const (
	HeartbeatInterval = time.Second
	LostAfter         = 4 * time.Second
	FenceAfter        = 4 * time.Second
)

// Status is what a node says of itself in its heartbeats.
type Status struct {
	Name string `msgpack:"name"`
	// Instance changes each time the node starts or comes back from a
	// fence: interpreters of an earlier instance are gone.
	Instance string `msgpack:"instance"`
	// Interpreters counts those alive and those being created; LastID is
	// the highest ID given to one. An interpreter with an ID up to LastID
	// is counted in Interpreters if it lives: the IDs a node gives only
	// grow.
	Interpreters int   `msgpack:"interpreters"`
	LastID       int64 `msgpack:"last_id,omitempty"`
	Pid          int   `msgpack:"pid"`
	StartedNano  int64 `msgpack:"started"`
	// Leaving is the node's last word when it stops on purpose: clients
	// count it lost at once instead of after LostAfter of silence.
	Leaving bool `msgpack:"leaving,omitempty"`
	// Peers are the other nodes the node has heard from and not lost. A
	// client that connects waits to hear from each of them too, so that
	// it knows every node at once, however late their answers come.
	Peers []string `msgpack:"peers,omitempty"`
}
