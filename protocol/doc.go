// Package protocol defines everything that crosses a process boundary in
// subinterp: the length-prefixed msgpack frames, the three message kinds of
// the symmetric RPC session that a supervisor and a worker (or a client and a
// daemon) hold over one connection, the typed wire errors, and the value
// codec that carries Go values and Lua values as msgpack.
//
// A session is symmetric: either side may issue requests while serving the
// other's. Requests are served concurrently; an in-flight request is
// cancelled with a "$cancel" notification carrying its id. Between a
// supervisor and a worker, calls travel on a second connection, the call
// channel (CallConn), which carries one call at a time and the worker's
// requests back to its supervisor (queues, nested interpreters, host
// functions and modules) made while that call runs. A client's control session with a daemon is symmetric
// too: the daemon calls a client's host functions back on it.
//
// No other package defines wire types. Values cross as msgpack produced and
// checked by this package's codec, so what a worker accepts and what a host
// receives are decided in one place.
package protocol
