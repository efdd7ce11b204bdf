//go:build linux || darwin

package daemon

import (
	"errors"
	"net"
)

// peerUID returns the user of the process at the other end of a Unix
// socket connection, as the kernel recorded it at connect time.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a Unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, credErr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) { uid, credErr = sockPeerUID(int(fd)) }); err != nil {
		return -1, err
	}
	return uid, credErr
}
