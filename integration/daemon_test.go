package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// TestDaemonInterpretersOutliveConnection: an interpreter belongs to the
// daemon, not to the connection that created it.
func TestDaemonInterpretersOutliveConnection(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	first := d.dial(t)
	it := create(t, first)
	mustExec(t, it, "kept = 'yes'")
	p := pid(t, it)
	first.Close()

	second := d.dial(t)
	again, err := second.Lookup(it.ID())
	if err != nil {
		t.Fatalf("Lookup from a new connection: %v", err)
	}
	wantEqual(t, "state seen by the new connection", global(t, again, "kept"), "yes")
	wantEqual(t, "pid seen by the new connection", pid(t, again), p)
	wantList(t, "ListAll from the new connection", listAll(t, second), second.GetMain(), again)
	// The closed runtime has let go of everything.
	_, err = it.IsRunning()
	wantNotFound(t, "a handle of the closed runtime", err)
}

// TestDaemonOutputGoesToCaller: each connection receives the output of its
// own calls, whoever created the interpreter.
func TestDaemonOutputGoesToCaller(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	var createdOut, aDefault, bOut syncBuffer
	a := d.dial(t, interpreters.WithStdout(&aDefault))
	b := d.dial(t, interpreters.WithStdout(&bOut))
	it := create(t, a, interpreters.WithStdout(&createdOut))
	mustExec(t, it, `print("from a")`)
	other, err := b.Lookup(it.ID())
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, other, `print("from b")`)
	wantEqual(t, "the creator's writer", createdOut.String(), "from a\n")
	wantEqual(t, "the other connection's writer", bOut.String(), "from b\n")
	wantEqual(t, "the creator's runtime default", aDefault.String(), "")
}

// TestDaemonQueueReferences: a connection's queue references go with it;
// a pinned queue stays.
func TestDaemonQueueReferences(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	a := d.dial(t)
	q, err := a.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := a.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pinned.Pin(); err != nil {
		t.Fatal(err)
	}
	_ = pinned.Put("kept")
	b := d.dial(t)
	qb, err := b.LookupQueue(q.ID())
	if err != nil {
		t.Fatalf("LookupQueue from another connection: %v", err)
	}
	a.Close()
	// b's handle keeps the queue.
	if err := qb.Put(1); err != nil {
		t.Fatalf("Put through the surviving connection: %v", err)
	}
	b.Close()

	// The daemon hears of the closes on its own schedule: poll its listing,
	// which takes no reference (a LookupQueue that came first would).
	c := d.dial(t)
	deadline := time.Now().Add(bounded)
	for {
		qs, err := c.DescribeQueues(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(qs, func(in interpreters.QueueInfo) bool { return in.ID == q.ID() }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %d still exists after every connection holding it closed: %+v", q.ID(), qs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.LookupQueue(q.ID()); !errors.Is(err, interpreters.ErrQueueNotFound) {
		t.Errorf("LookupQueue of the queue no connection holds: %v, want ErrQueueNotFound", err)
	}
	p, err := c.LookupQueue(pinned.ID())
	if err != nil {
		t.Fatalf("the pinned queue is gone: %v", err)
	}
	v, err := p.GetNowait()
	wantEqual(t, "the pinned queue's item", v, "kept")
	wantEqual(t, "its error", err, nil)
}

// TestDaemonConnectionLoss: when the daemon goes away, calls in flight and
// later calls fail with ErrUnavailable; nothing hangs.
func TestDaemonConnectionLoss(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{ShutdownGrace: 100 * time.Millisecond})
	rt := d.dial(t)
	it := create(t, rt)
	p := pid(t, it)
	loop := startExec(t.Context(), it, "while true do end")
	waitRunning(t, it, loop.done)
	d.stop(t)
	_, err := loop.wait(t) // bounded: only a call that never fails fails here
	wantErr(t, "the call in flight at shutdown", err, interpreters.ErrUnavailable)
	wantErr(t, "the call in flight at shutdown", err, interpreters.ErrInterpreter)
	err = it.Exec("x = 1")
	wantErr(t, "a call after the daemon went", err, interpreters.ErrUnavailable)
	if err != nil && !strings.Contains(err.Error(), "connection") {
		t.Errorf("error text %q should say the connection was lost", err)
	}
	_, err = rt.CreateQueue(0)
	wantErr(t, "CreateQueue after the daemon went", err, interpreters.ErrUnavailable)
	waitGone(t, p)
	if _, err := os.Stat(d.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after shutdown: %v", err)
	}
}

// TestDaemonShutdownGrace: a call that ends within the grace period
// completes; shutdown then closes every interpreter.
func TestDaemonShutdownGrace(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{ShutdownGrace: 10 * time.Second})
	rt := d.dial(t)
	it := create(t, rt)
	p := pid(t, it)
	call := start(func() (any, error) {
		return it.Call("function() local t = os.clock() while os.clock() - t < 0.5 do end return 'done' end")
	})
	waitRunning(t, it, call.done)
	go d.cancel()
	res, err := call.wait(t)
	if err != nil || res != "done" {
		t.Errorf("the call in flight at shutdown = %v, %v; want it to finish", res, err)
	}
	d.stop(t)
	waitGone(t, p)
}

// TestDaemonShutdownForced: a call that would outlast the grace is
// cancelled at once when the shutdown is forced (Abort, what a second
// signal does) or when the grace is negative; either way the interpreter's
// worker ends with the daemon.
func TestDaemonShutdownForced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace time.Duration
		abort bool
	}{
		{"abort", time.Hour, true},
		{"no grace", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, daemon.Config{ShutdownGrace: tc.grace})
			rt := d.dial(t)
			it := create(t, rt)
			p := pid(t, it)
			call := start(func() (any, error) { return nil, it.Exec("while true do end") })
			waitRunning(t, it, call.done)
			d.cancel()
			if tc.abort {
				d.Abort()
			}
			_, err := call.wait(t)
			if err == nil {
				t.Fatal("the endless call returned no error")
			}
			if !strings.Contains(err.Error(), "shut down") {
				t.Errorf("the cancelled call's error %q does not say the daemon shut down", err)
			}
			d.stop(t)
			waitGone(t, p)
		})
	}
}

// TestDaemonShutdownEndsQueueWaits: a remote get waiting on an empty queue
// does no work the grace would let finish: it ends as the shutdown begins,
// saying so, and the daemon stops without waiting out the grace.
func TestDaemonShutdownEndsQueueWaits(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{ShutdownGrace: time.Hour})
	rt := d.dial(t)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	full, err := rt.CreateQueue(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Put(1); err != nil {
		t.Fatal(err)
	}
	get := start(func() (any, error) { return q.Get() })
	putNowait := start(func() (any, error) { return nil, full.Put(2) })
	// Both wait in the daemon when the shutdown begins.
	waitQueueWaiters(t, rt, q, 1)
	waitQueueWaiters(t, rt, full, 1)
	d.cancel()
	for name, op := range map[string]*async{"the Get": get, "the Put into a full queue": putNowait} {
		_, err := op.wait(t)
		if err == nil || !strings.Contains(err.Error(), "the daemon shut") && !strings.Contains(err.Error(), "the daemon is shutting down") {
			t.Errorf("%s waiting at shutdown ended with %v; want an error saying the daemon shut down", name, err)
		}
	}
	d.stop(t)
}

// TestDaemonHello: the first request must be a hello of the same protocol
// version; a mismatch names both versions.
func TestDaemonHello(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})

	c := rawConn(t, d.SocketPath())
	_, err := protocol.ClientHello(c, protocol.HelloParams{Version: protocol.Version + 41})
	var e *protocol.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeVersion {
		t.Fatalf("hello of another version: %v, want a %q error", err, protocol.CodeVersion)
	}
	for _, want := range []string{fmt.Sprintf("version %d", protocol.Version+41), fmt.Sprintf("version %d", protocol.Version)} {
		if !strings.Contains(e.Msg, want) {
			t.Errorf("version error %q does not name %q", e.Msg, want)
		}
	}
	wantClosed(t, c)

	c = rawConn(t, d.SocketPath())
	frame, _ := protocol.AppendMessage(nil, &protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: protocol.ControlList, Body: []byte{0xc0}})
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	b, err := protocol.ReadFrame(c, nil)
	if err != nil {
		t.Fatalf("no answer to a request before hello: %v", err)
	}
	m, err := protocol.DecodeMessage(b)
	if err != nil || m.Error == nil || m.Error.Code != protocol.CodeProtocol {
		t.Errorf("a request before hello: %+v, %v; want a protocol error", m, err)
	}
	wantClosed(t, c)

	c = rawConn(t, d.SocketPath())
	res, err := protocol.ClientHello(c, protocol.HelloParams{Version: protocol.Version})
	if err != nil || res.Version != protocol.Version || res.Pid != os.Getpid() {
		t.Errorf("hello = %+v, %v", res, err)
	}
}

func rawConn(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(bounded))
	return c
}

// wantClosed checks that the daemon closed the connection.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read after a refusal: %v, want EOF (the daemon closes the connection)", err)
	}
}

// TestDaemonSocket: the socket is private, a second daemon on it refuses
// to start, a stale one is replaced and anything else is left alone.
func TestDaemonSocket(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	fi, err := os.Stat(d.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	_, err = daemon.Listen(daemon.Config{Socket: d.SocketPath()})
	if !errors.Is(err, daemon.ErrAlreadyServing) {
		t.Errorf("a second daemon on the socket: %v, want ErrAlreadyServing", err)
	}
	// The live daemon is untouched.
	rt := d.dial(t)
	if _, err := rt.ListAll(); err != nil {
		t.Errorf("the first daemon after the second's attempt: %v", err)
	}

	dir := socketDir(t)
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	s := startDaemon(t, daemon.Config{Socket: stale})
	if _, err := s.dial(t).ListAll(); err != nil {
		t.Errorf("a daemon started over a stale socket: %v", err)
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Listen(daemon.Config{Socket: plain}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a daemon over a regular file: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "data" {
		t.Error("the regular file was changed")
	}
}

// TestDaemonTCP: TCP needs TLS and the token; a wrong or missing token is
// refused with ErrPermissionDenied.
func TestDaemonTCP(t *testing.T) {
	t.Parallel()
	dir := socketDir(t)
	serverTLS, clientTLS := selfSigned(t)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Listen(daemon.Config{Socket: filepath.Join(dir, "a.sock"), Listen: "127.0.0.1:0", TokenFile: tokenFile}); err == nil {
		t.Error("TCP without TLS was accepted")
	}
	if _, err := daemon.Listen(daemon.Config{Socket: filepath.Join(dir, "b.sock"), Listen: "127.0.0.1:0", TLS: serverTLS}); err == nil {
		t.Error("TCP without a token was accepted")
	}
	d := startDaemon(t, daemon.Config{Listen: "127.0.0.1:0", TokenFile: tokenFile, TLS: serverTLS})
	addr := "tcp://" + d.TCPAddr().String()

	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	rt, err := interpreters.Dial(ctx, addr, interpreters.WithToken("s3cret-token"), interpreters.WithTLS(clientTLS))
	if err != nil {
		t.Fatalf("Dial with the token: %v", err)
	}
	defer rt.Close()
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	mustExec(t, it, `print("over tcp")`)
	wantEqual(t, "output over TCP", out.String(), "over tcp\n")

	for _, tc := range []struct{ name, token string }{{"no token", ""}, {"a wrong token", "s3cret-tokeN"}} {
		_, err := interpreters.Dial(ctx, addr, interpreters.WithToken(tc.token), interpreters.WithTLS(clientTLS))
		wantErr(t, "Dial with "+tc.name, err, interpreters.ErrPermissionDenied)
		if err != nil && !strings.Contains(err.Error(), "token") {
			t.Errorf("Dial with %s: %q does not mention the token", tc.name, err)
		}
	}
	// Without TLS the daemon does not answer a hello.
	c, err := net.Dial("tcp", d.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(bounded))
	if _, err := protocol.ClientHello(c, protocol.HelloParams{Version: protocol.Version, Token: "s3cret-token"}); err == nil {
		t.Error("a plaintext hello over TCP was answered")
	}
	// A client that does not trust the daemon's certificate stops there.
	_, err = interpreters.Dial(ctx, addr, interpreters.WithToken("s3cret-token"))
	wantErr(t, "Dial without the CA", err, interpreters.ErrUnavailable)
}

// selfSigned makes a certificate for 127.0.0.1 and the two TLS
// configurations that use it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	server, caPEM, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	return server, testcert.Client(caPEM)
}

// TestDaemonMetrics: the Prometheus endpoint reports interpreters, calls
// by outcome, latency and queue depths.
func TestDaemonMetrics(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{MetricsAddr: "127.0.0.1:0"})
	rt := d.dial(t)
	it := create(t, rt)
	mustExec(t, it, "x = 1")
	_ = it.Exec("error('x')")
	mustCall(t, it, "tostring", 1)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	_ = q.Put(1)
	_ = q.Put(2)
	gone := create(t, rt)
	_ = syscall.Kill(pid(t, gone), syscall.SIGKILL)
	deadline := time.Now().Add(bounded)
	for {
		if _, err := gone.IsRunning(); err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	resp, err := http.Get("http://" + d.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		"subinterp_interpreters_alive 1",
		"subinterp_interpreters_created_total 2",
		"subinterp_interpreters_crashed_total 1",
		`subinterp_calls_total{method="exec",outcome="ok"} 1`,
		`subinterp_calls_total{method="exec",outcome="execution_failed"} 1`,
		`subinterp_calls_total{method="call",outcome="ok"} 1`,
		`subinterp_call_duration_seconds_count{method="exec"} 2`,
		`subinterp_queue_items{queue="` + strconv.FormatInt(q.ID(), 10) + `"} 2`,
		"subinterp_connections 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

// TestDaemonCensus: a census counts the interpreters alive, and says the
// highest ID given, which a closed interpreter does not lower; one who
// created interpreters can so tell which of them it counts.
func TestDaemonCensus(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{})
	rt := d.dial(t)
	var last *interpreters.Interpreter
	for range 3 {
		last = create(t, rt)
	}
	n, top := d.Census()
	wantEqual(t, "interpreters in the census", n, 3)
	wantEqual(t, "the highest ID given", top, last.ID())
	if err := last.Close(); err != nil {
		t.Fatal(err)
	}
	n, top = d.Census()
	wantEqual(t, "interpreters after a close", n, 2)
	wantEqual(t, "the highest ID after a close", top, last.ID())
}

// TestDaemonCensusCountsOnlyWhatItNames: a create still waiting for its ID
// is not in the census, since the census could not say which interpreter
// it counted; a client that counts its own create until a census names
// it would count it twice.
func TestDaemonCensusCountsOnlyWhatItNames(t *testing.T) {
	t.Parallel()
	asked, release := make(chan struct{}), make(chan struct{})
	next := int64(7)
	d := startDaemon(t, daemon.Config{Supervisor: supervisor.Config{NextID: func(ctx context.Context) (int64, error) {
		asked <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		next++
		return next, nil
	}}})
	rt := d.dial(t)
	created := make(chan error, 1)
	go func() {
		_, err := rt.Create()
		created <- err
	}()
	<-asked
	n, top := d.Census()
	wantEqual(t, "interpreters in a census taken while the create waits for its ID", n, 0)
	wantEqual(t, "the highest ID then", top, int64(0))
	close(release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	n, top = d.Census()
	wantEqual(t, "interpreters after the create", n, 1)
	wantEqual(t, "the highest ID after the create", top, int64(8))
}
