package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// ErrAlreadyServing is returned by Listen when a live daemon already
// serves the socket.
var ErrAlreadyServing = errors.New("another subinterp daemon is already serving this socket")

// listenUnix creates the daemon's socket at path with the given mode. The
// socket is bound under a temporary name, given its mode, then hard-linked
// into place: it is never reachable with looser permissions (whatever the
// umask), and of two daemons starting at once only one gets the path.
func listenUnix(path string, mode os.FileMode, log hclog.Logger) (*net.UnixListener, os.FileInfo, error) {
	// Bound under a short name, a longer path would link into place, and
	// serve no one: a client cannot connect to a name sun_path cannot hold.
	if max := len(syscall.RawSockaddrUnix{}.Path) - 1; len(path) > max {
		return nil, nil, fmt.Errorf("socket path %s is %d bytes; a Unix socket path holds at most %d", path, len(path), max)
	}
	dir := filepath.Dir(path)
	if err := prepareDir(dir); err != nil {
		return nil, nil, err
	}
	if err := clearStale(path, log); err != nil {
		return nil, nil, err
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(dir, ".s"+hex.EncodeToString(suffix[:]))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false) // the socket's name is path, removed by the daemon itself
	defer os.Remove(tmp)
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("restrict %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		l.Close()
		if errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("%w: %s appeared while starting", ErrAlreadyServing, path)
		}
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, fi, nil
}

// prepareDir makes sure the socket's directory exists. The default
// directory under /tmp is the daemon's own: created 0700, and refused if
// someone else owns it or can write to it, since they could replace the
// socket.
func prepareDir(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create socket directory: %w", err)
		}
	}
	if dir != defaultSocketDir() {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s is not a directory", dir)
	case ok && int(st.Uid) != os.Getuid():
		return fmt.Errorf("socket directory %s belongs to uid %d, not to this user (%d)", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("socket directory %s has mode %v; it must be private (0700)", dir, fi.Mode().Perm())
	}
	return nil
}

// clearStale removes a socket no daemon answers on, and refuses to touch
// a live one or anything that is not a socket.
func clearStale(path string, log hclog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; not replacing it", path)
	}
	c, err := net.DialTimeout("unix", path, liveProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s (stop it first, or pick another --socket)", ErrAlreadyServing, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether a daemon serves %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	log.Info("removed a stale socket", "path", path)
	return nil
}

// removeSocket removes path if it is still the socket this daemon made.
func removeSocket(path string, ours os.FileInfo) {
	fi, err := os.Lstat(path)
	if err == nil && os.SameFile(fi, ours) {
		_ = os.Remove(path)
	}
}
