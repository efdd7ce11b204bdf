package supervisor

import (
	"net/rpc"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/subinterp/subinterp/protocol"
)

// handshake is go-plugin's handshake between the supervisor and its
// workers; the worker side speaks it from the protocol package's values.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  protocol.Version,
	MagicCookieKey:   protocol.HandshakeCookieKey,
	MagicCookieValue: protocol.HandshakeCookieValue,
}

// plugins is the go-plugin plugin set of a worker: one control plugin that
// is never dispensed. go-plugin launches and handshakes the worker; data
// travels on the socketpairs.
var plugins = map[string]plugin.Plugin{"subinterp": controlPlugin{}}

type controlPlugin struct{}

func (controlPlugin) Server(*plugin.MuxBroker) (any, error) { return struct{}{}, nil }

func (controlPlugin) Client(*plugin.MuxBroker, *rpc.Client) (any, error) { return struct{}{}, nil }
