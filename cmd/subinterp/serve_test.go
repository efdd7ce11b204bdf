package main

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/subinterp/subinterp/daemon"
)

// TestServeFlags: serve lists only the flags it uses, 0 grace means none,
// and settings with no meaning are refused before anything starts.
func TestServeFlags(t *testing.T) {
	t.Parallel()
	help := cli(t, "", "serve", "--help").want(t, "serve --help", 0).stdout
	// --tls-ca is serve's too: the CA of the NATS servers a node joins.
	for _, ignored := range []string{"--timeout"} {
		if strings.Contains(help, ignored) {
			t.Errorf("serve --help lists %s, which serve ignores", ignored)
		}
	}
	for _, doc := range []string{"SIGHUP", "0666", "SO_PEERCRED", "daemon's own privileges", "0: no grace", "--tls-ca", "NATS servers' certificates", "--http-addr", "status page"} {
		if !strings.Contains(help, doc) {
			t.Errorf("serve --help does not mention %q", doc)
		}
	}
	refused(t, "serve", "--timeout", "1s", "--socket", socketPath(t))

	if got := shutdownGraceConfig(0); got >= 0 {
		t.Errorf("--shutdown-grace 0 becomes ShutdownGrace %v, want a negative value (no grace)", got)
	}
	if got := shutdownGraceConfig(3 * time.Second); got != 3*time.Second {
		t.Errorf("--shutdown-grace 3s becomes ShutdownGrace %v", got)
	}
	serve := newServeCommand(&clientFlags{})
	if def := serve.Flags().Lookup("shutdown-grace").DefValue; def != daemon.DefaultShutdownGrace.String() {
		t.Errorf("--shutdown-grace defaults to %s, want the daemon's %v", def, daemon.DefaultShutdownGrace)
	}

	for _, args := range [][]string{
		{"--warm-spares", "-1"},
		{"--kill-grace", "-1s"},
		{"--shutdown-grace", "-1s"},
		{"--http-addr", "0.0.0.0:0"}, // the status page on every interface, without TLS
		{"--http-addr", ":0"},
	} {
		sock := socketPath(t)
		refused(t, append([]string{"serve", "--socket", sock}, args...)...)
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("serve %v created its socket before refusing: %v", args, err)
		}
	}
}

// refused runs serve with args and wants a usage error, within bounded: a
// serve that accepted them would be serving.
func refused(t *testing.T, args ...string) {
	t.Helper()
	done := make(chan int, 1)
	var errb syncBuffer
	go func() { done <- execute(args, strings.NewReader(""), io.Discard, &errb) }()
	select {
	case code := <-done:
		if code != exitUsage {
			t.Errorf("%v: exit code %d, want %d\n%s", args, code, exitUsage, errb.String())
		}
	case <-time.After(bounded):
		t.Fatalf("%v was not refused: serve is running", args)
	}
}

// TestStopOnSignals: the first signal starts a graceful shutdown, the
// second forces it.
func TestStopOnSignals(t *testing.T) {
	t.Parallel()
	sigs := make(chan os.Signal)
	done := make(chan struct{})
	shutdown, abort, returned := make(chan struct{}, 2), make(chan struct{}, 2), make(chan struct{})
	go func() {
		stopOnSignals(sigs, done, func() { shutdown <- struct{}{} }, func() { abort <- struct{}{} }, hclog.NewNullLogger())
		close(returned)
	}()
	send := func(sig os.Signal) {
		select {
		case sigs <- sig:
		case <-time.After(bounded):
			t.Fatalf("%v was not taken", sig)
		}
	}
	send(syscall.SIGHUP)
	select {
	case <-shutdown:
	case <-time.After(bounded):
		t.Fatal("the first signal did not start the shutdown")
	}
	if len(abort) != 0 {
		t.Fatal("the first signal forced the shutdown")
	}
	send(syscall.SIGTERM)
	select {
	case <-abort:
	case <-time.After(bounded):
		t.Fatal("the second signal did not force the shutdown")
	}
	select {
	case <-returned:
	case <-time.After(bounded):
		t.Fatal("stopOnSignals did not return after forcing the shutdown")
	}
	close(done)
	if len(shutdown) != 0 {
		t.Error("the second signal started the shutdown again")
	}

	// Once the daemon has stopped, it returns without a signal.
	done2, returned2 := make(chan struct{}), make(chan struct{})
	go func() {
		stopOnSignals(make(chan os.Signal), done2, func() {}, func() {}, hclog.NewNullLogger())
		close(returned2)
	}()
	close(done2)
	select {
	case <-returned2:
	case <-time.After(bounded):
		t.Fatal("stopOnSignals outlived the daemon")
	}
}
