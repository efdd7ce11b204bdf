//go:build !linux && !darwin

package daemon

import (
	"errors"
	"net"
)

// peerUID cannot learn a peer's user on this system, so every Unix socket
// client is refused rather than trusted.
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("peer credentials are not supported on this system")
}
