// Package node makes a daemon a node of a cluster: it joins a NATS
// deployment (or runs an embedded nats-server, which may route to the
// embedded servers of other daemons), serves the daemon's interpreters on
// the node's subjects through the daemon's own handlers, publishes a
// heartbeat with its load every second, and hands out cluster-unique IDs
// from blocks of a JetStream key-value counter.
//
// Fencing: every quarter second the node checks that it is still part of
// the cluster — its NATS server answers a round trip and, for an embedded
// server with peers, at least one route is up (an embedded node's own
// connection is in-process and looks healthy through any partition). Cut
// off for cluster.FenceAfter, it closes every interpreter and, once back,
// serves as a new instance, which clients tell from the old one.
package node
