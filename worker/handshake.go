package worker

import (
	"os"
	"os/signal"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/subinterp/subinterp/protocol"
)

// handshake answers the go-plugin client that launched the worker: the
// line go-plugin's Serve would print, without linking go-plugin. Its gRPC
// and protobuf packages would otherwise initialise in every worker, and
// its Serve would open a listener, a socket file and two pipes that
// nothing uses: the worker's session is the socketpair it inherited.
//
// Then stdout points at /dev/null, so the host reads it to its end and
// lets its pipe go (go-plugin's client discards whatever follows the
// line, so nothing is lost), and the worker ignores SIGINT as go-plugin
// plugins do: a Ctrl-C at the host's terminal reaches its whole process
// group, and ending the workers is the host's decision.
func handshake() error {
	line := strings.Join([]string{
		strconv.Itoa(protocol.HandshakeCoreVersion),
		// The worker speaks one wire version: a host that does not list
		// it refuses the worker with go-plugin's "incompatible API
		// version", as it would refuse a go-plugin server of another.
		strconv.Itoa(protocol.Version),
		protocol.HandshakeNetwork,
		protocol.HandshakeAddr,
		protocol.HandshakeProtocol,
		"", // no server certificate
	}, "|") + "\n"
	signal.Ignore(os.Interrupt)
	if _, err := os.Stdout.WriteString(line); err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	return unix.Dup2(int(devnull.Fd()), int(os.Stdout.Fd()))
}
