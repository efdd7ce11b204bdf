package protocol

import (
	"net/rpc"

	plugin "github.com/hashicorp/go-plugin"
)

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

// Handshake is the go-plugin handshake between a supervisor and its workers.
// The cookie only tells a worker binary that a supervisor started it; it is
// not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  Version,
	MagicCookieKey:   "SUBINTERP_WORKER_COOKIE",
	MagicCookieValue: "6f1c2b8e4a7d4e0f9a3b5c1d2e8f7a6b",
}

// PluginName is the name of the control plugin every worker serves. It
// carries nothing but go-plugin's lifecycle; data travels on the socketpair.
const PluginName = "subinterp"

// Plugins is the go-plugin plugin set of supervisor and worker: one control
// plugin that is never dispensed.
var Plugins = map[string]plugin.Plugin{PluginName: controlPlugin{}}

type controlPlugin struct{}

func (controlPlugin) Server(*plugin.MuxBroker) (any, error) { return struct{}{}, nil }

func (controlPlugin) Client(*plugin.MuxBroker, *rpc.Client) (any, error) { return struct{}{}, nil }
