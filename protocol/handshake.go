package protocol

// WorkerArg is argv[1] of a worker process. The role is chosen by this
// argument and the handshake cookie together, so a program started from
// inside a worker with the cookie in its environment does not mistake
// itself for a worker.
const WorkerArg = "__subinterp_worker__"

// WorkerConfigEnv names the environment variable that carries a worker's
// WorkerConfig as JSON.
const WorkerConfigEnv = "SUBINTERP_WORKER_CONFIG"

// WorkerConnFD is the file descriptor of the worker's end of the data
// connection, a socketpair the supervisor hands over at spawn.
const WorkerConnFD = 3

// WorkerCallFD is the worker's end of the call channel, a second
// socketpair. Calls (exec, call, prepare_main, configure) travel on it one
// at a time: the request, then the call's output and the worker's own
// requests to the supervisor (each answered on the channel before the
// worker goes on, or sent as a notification that needs no answer), then
// the response. Each side reads and writes it on the
// goroutine that waits for it: no hand-off between goroutines, which is
// what a round trip costs most. An interpreter runs one call at a time, so
// the channel needs no multiplexing; cancellation and stats stay on the
// session.
const WorkerCallFD = 4

// The go-plugin handshake between a supervisor and its workers, as plain
// values: the worker speaks go-plugin's handshake without linking
// go-plugin (whose gRPC and protobuf would initialise in every worker
// before it could start), and the supervisor builds go-plugin's
// HandshakeConfig from them. The cookie only tells a worker binary that a
// supervisor started it; it is not a security measure.
const (
	HandshakeCookieKey   = "SUBINTERP_WORKER_COOKIE"
	HandshakeCookieValue = "6f1c2b8e4a7d4e0f9a3b5c1d2e8f7a6b"
)

// Go-plugin's handshake line, which a worker prints on stdout once it is
// ready: CORE|APP|NETWORK|ADDR|PROTOCOL. The worker serves go-plugin no
// RPC (its session is the socketpair on WorkerConnFD), so the address names
// that descriptor rather than a listener, and nothing dials it.
const (
	// HandshakeCoreVersion is go-plugin's core protocol version.
	HandshakeCoreVersion = 1
	// HandshakeNetwork and HandshakeAddr are the address the line gives.
	HandshakeNetwork = "unix"
	HandshakeAddr    = "fd/3"
	// HandshakeProtocol is go-plugin's net/rpc protocol name: the one a
	// supervisor allows, though it never dispenses a plugin.
	HandshakeProtocol = "netrpc"
)
