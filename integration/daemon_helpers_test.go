package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// testDaemon is a daemon served in-process by a test.
type testDaemon struct {
	*daemon.Server
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// socketDir returns a fresh private directory for a daemon socket. It is
// short on purpose: a Unix socket path must fit in 108 bytes, which a
// t.TempDir named after a nested test may not.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemon serves a daemon in-process on a socket of its own; it is
// shut down, every interpreter closed, when the test ends. cfg's Socket
// and Logger are filled in when empty.
func startDaemon(t testing.TB, cfg daemon.Config) *testDaemon {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(socketDir(t), "d.sock")
	}
	logs := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	}
	if cfg.Supervisor.KillGrace == 0 {
		cfg.Supervisor.KillGrace = 500 * time.Millisecond
	}
	srv, err := daemon.Listen(cfg)
	if err != nil {
		t.Fatalf("daemon.Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &testDaemon{Server: srv, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { d.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop shuts the daemon down and waits for Serve to return; it may be
// called more than once.
func (d *testDaemon) stop(t testing.TB) {
	t.Helper()
	d.cancel()
	select {
	case err, ok := <-d.done:
		if ok {
			close(d.done)
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the daemon did not shut down within 30s; its log:\n%s", d.logs.String())
	}
}

// dial connects a runtime to the daemon; the connection is closed when
// the test ends, before the daemon stops.
func (d *testDaemon) dial(t testing.TB, opts ...interpreters.Option) *interpreters.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bounded)
	defer cancel()
	rt, err := interpreters.Dial(ctx, d.SocketPath(), opts...)
	if err != nil {
		t.Fatalf("Dial %s: %v", d.SocketPath(), err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// buildCLI builds the subinterp binary into a directory of the test's. The
// directory and the binary are readable and executable by every user, so a
// test can run it as another one.
func buildCLI(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	bin := filepath.Join(dir, "subinterp")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/subinterp/subinterp/cmd/subinterp")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out.String())
	}
	return bin
}
