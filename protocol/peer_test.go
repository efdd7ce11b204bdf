package protocol_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// waitLimit bounds every wait, so that a bug fails a test instead of
// hanging it.
const waitLimit = 5 * time.Second

type transport struct {
	name string
	pair func(t *testing.T) (net.Conn, net.Conn)
}

// Both an in-memory pipe (unbuffered: every Write waits for a Read) and a
// kernel socket (buffered, short reads) are used, since the two expose
// different orderings and blocking.
var transports = []transport{
	{"pipe", func(t *testing.T) (net.Conn, net.Conn) { return net.Pipe() }},
	{"socketpair", socketPair},
}

func socketPair(t *testing.T) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

// settleGoroutines fails t when, after every other cleanup has run, the
// goroutine count does not come back to what it was when it was called.
func settleGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitLimit)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func startPeers(t *testing.T, tr transport, ca, cb protocol.PeerConfig) (*protocol.Peer, *protocol.Peer) {
	c1, c2 := tr.pair(t)
	a := protocol.NewPeer(c1, ca)
	b := protocol.NewPeer(c2, cb)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// startRaw returns a peer and the other end of its connection, for tests
// that play the other side by hand.
func startRaw(t *testing.T, tr transport, cfg protocol.PeerConfig) (*protocol.Peer, net.Conn) {
	c1, raw := tr.pair(t)
	p := protocol.NewPeer(c1, cfg)
	t.Cleanup(func() {
		raw.Close()
		p.Close()
	})
	return p, raw
}

func readMsg(t *testing.T, c net.Conn) *protocol.Message {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	body, err := protocol.ReadFrame(c, nil)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	m, err := protocol.DecodeMessage(body)
	if err != nil {
		t.Fatalf("decoding %x: %v", body, err)
	}
	return m
}

func writeMsg(t *testing.T, c net.Conn, m *protocol.Message) {
	t.Helper()
	frame, err := protocol.AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatalf("writing a frame: %v", err)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s: not done after %v", what, waitLimit)
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("%s: nothing after %v", what, waitLimit)
		panic("unreachable")
	}
}

func echo(_ context.Context, body []byte) (any, error) { return msgpack.RawMessage(body), nil }

func unmarshal[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := msgpack.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal %x: %v", b, err)
	}
	return v
}

// blocker is a handler that waits for its context and reports how it ended.
type blocker struct {
	started chan struct{}
	ended   chan error
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 16), ended: make(chan error, 16)}
}

func (b *blocker) handle(ctx context.Context, _ []byte) (any, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return nil, ctx.Err()
}

func TestPeerConcurrentCallsBothWays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		var aRef, bRef atomic.Pointer[protocol.Peer]
		handlers := func(self *atomic.Pointer[protocol.Peer]) map[string]protocol.Handler {
			return map[string]protocol.Handler{
				"double": func(_ context.Context, body []byte) (any, error) {
					var n int64
					if err := msgpack.Unmarshal(body, &n); err != nil {
						return nil, err
					}
					return n * 2, nil
				},
				// Serves a request by calling back the side that sent it,
				// as a worker does when Lua code uses a queue mid-call.
				"callback": func(ctx context.Context, body []byte) (any, error) {
					res, err := self.Load().Call(ctx, "double", msgpack.RawMessage(body))
					if err != nil {
						return nil, err
					}
					var n int64
					if err := msgpack.Unmarshal(res, &n); err != nil {
						return nil, err
					}
					return n + 1, nil
				},
			}
		}
		a, b := startPeers(t, tr,
			protocol.PeerConfig{Handlers: handlers(&aRef)},
			protocol.PeerConfig{Handlers: handlers(&bRef)})
		aRef.Store(a)
		bRef.Store(b)
		ctx := testCtx(t)

		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			for side, p := range []*protocol.Peer{a, b} {
				for _, method := range []string{"double", "callback"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						res, err := p.Call(ctx, method, int64(i))
						if err != nil {
							t.Errorf("side %d %s(%d): %v", side, method, i, err)
							return
						}
						want := int64(2 * i)
						if method == "callback" {
							want++
						}
						var got int64
						if err := msgpack.Unmarshal(res, &got); err != nil || got != want {
							t.Errorf("side %d %s(%d) = %d, %v; want %d", side, method, i, got, err, want)
						}
					}()
				}
			}
		}
		wg.Wait()
	})
}

func TestPeerSlowHandlerDoesNotBlockFastOne(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		release := make(chan struct{})
		started := make(chan struct{})
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"slow": func(ctx context.Context, _ []byte) (any, error) {
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return "slow", nil
			},
			"fast": func(context.Context, []byte) (any, error) { return "fast", nil },
		}})
		ctx := testCtx(t)

		slow := make(chan string, 1)
		go func() {
			res, err := a.Call(ctx, "slow", nil)
			if err != nil {
				t.Errorf("slow: %v", err)
			}
			slow <- string(res)
		}()
		recv(t, started, "slow handler start")
		for i := 0; i < 3; i++ {
			res, err := a.Call(ctx, "fast", nil)
			if err != nil || unmarshal[string](t, res) != "fast" {
				t.Fatalf("fast call while slow runs: %x, %v", res, err)
			}
		}
		select {
		case <-slow:
			t.Fatal("slow call returned before it was released")
		default:
		}
		close(release)
		if got := recv(t, slow, "slow call"); unmarshal[string](t, []byte(got)) != "slow" {
			t.Errorf("slow result %q", got)
		}
	})
}

func TestPeerContextCancelReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		blk := newBlocker()
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"block": blk.handle,
			"echo":  echo,
		}})

		ctx, cancel := context.WithCancel(testCtx(t))
		go func() {
			<-blk.started
			cancel()
		}()
		_, err := a.Call(ctx, "block", nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: %v, want context.Canceled", err)
		}
		if err := recv(t, blk.ended, "handler after cancel"); !errors.Is(err, context.Canceled) {
			t.Errorf("handler's ctx ended with %v", err)
		}

		dctx, dcancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
		defer dcancel()
		_, err = a.Call(dctx, "block", nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("expired call: %v, want context.DeadlineExceeded", err)
		}
		recv(t, blk.started, "second handler start")
		if err := recv(t, blk.ended, "handler after deadline"); err == nil {
			t.Error("handler's ctx not cancelled after the caller's deadline")
		}

		// The session outlives cancelled calls.
		res, err := a.Call(testCtx(t), "echo", "still here")
		if err != nil || unmarshal[string](t, res) != "still here" {
			t.Errorf("after cancellations: %x, %v", res, err)
		}
	})
}

func TestPeerCancelOnTheWire(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		a, raw := startRaw(t, tr, protocol.PeerConfig{})
		ctx, cancel := context.WithCancel(testCtx(t))
		done := make(chan error, 1)
		go func() {
			_, err := a.Call(ctx, "work", "p")
			done <- err
		}()
		req := readMsg(t, raw)
		if req.Kind != protocol.KindRequest || req.Method != "work" || unmarshal[string](t, req.Body) != "p" {
			t.Fatalf("request %+v", req)
		}
		cancel()
		note := readMsg(t, raw)
		if note.Kind != protocol.KindNotification || note.Method != protocol.MethodCancel {
			t.Fatalf("after cancel got %+v, want a %s notification", note, protocol.MethodCancel)
		}
		if id := unmarshal[uint32](t, note.Body); id != req.ID {
			t.Errorf("%s names id %d, want %d", protocol.MethodCancel, id, req.ID)
		}
		if err := recv(t, done, "cancelled call"); !errors.Is(err, context.Canceled) {
			t.Errorf("Call returned %v, want context.Canceled", err)
		}

		// An answer that arrives after the caller gave up is dropped, and
		// the session goes on.
		writeMsg(t, raw, &protocol.Message{Kind: protocol.KindResponse, ID: req.ID, Body: []byte{0x01}})
		result := make(chan []byte, 1)
		go func() {
			res, err := a.Call(testCtx(t), "ping", nil)
			if err != nil {
				t.Errorf("ping: %v", err)
			}
			result <- res
		}()
		req2 := readMsg(t, raw)
		if req2.ID == req.ID {
			t.Errorf("id %d reused", req.ID)
		}
		writeMsg(t, raw, &protocol.Message{Kind: protocol.KindResponse, ID: req2.ID, Body: fixstr("pong")})
		if res := recv(t, result, "ping"); !bytes.Equal(res, fixstr("pong")) {
			t.Errorf("ping result %x", res)
		}
	})
}

func TestPeerCallWithDoneContextSendsNothing(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		a, raw := startRaw(t, tr, protocol.PeerConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Call(ctx, "m", nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("Call with a cancelled ctx: %v", err)
		}
		raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if b, err := protocol.ReadFrame(raw, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("something was sent: %x, %v", b, err)
		}
	})
}

func TestPeerGoAndCancel(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		blk := newBlocker()
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"block": blk.handle,
			"echo":  echo,
		}})

		c, err := a.Go("block", nil)
		if err != nil {
			t.Fatal(err)
		}
		recv(t, blk.started, "handler start")
		select {
		case <-c.Done:
			t.Fatal("call done before its handler returned")
		default:
		}
		gaveUp := errors.New("gave up")
		a.Cancel(c, gaveUp)
		waitClosed(t, c.Done, "cancelled call")
		if c.Err != gaveUp || c.Result != nil {
			t.Errorf("cancelled call: Err=%v Result=%x, want Err=gaveUp", c.Err, c.Result)
		}
		if err := recv(t, blk.ended, "handler after Cancel"); !errors.Is(err, context.Canceled) {
			t.Errorf("handler ctx: %v", err)
		}

		// Cancelling a call that has already been answered keeps the answer.
		c2, err := a.Go("echo", "x")
		if err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c2.Done, "echo call")
		a.Cancel(c2, gaveUp)
		if c2.Err != nil || unmarshal[string](t, c2.Result) != "x" {
			t.Errorf("answered call after Cancel: Err=%v Result=%x", c2.Err, c2.Result)
		}

		c3, err := a.Go("echo", "y")
		if err != nil {
			t.Fatal(err)
		}
		if c3.ID == c.ID || c3.ID == c2.ID {
			t.Errorf("call ids %d, %d, %d are not distinct", c.ID, c2.ID, c3.ID)
		}
		waitClosed(t, c3.Done, "third call")
		if c3.Err != nil || unmarshal[string](t, c3.Result) != "y" {
			t.Errorf("third call: %v %x", c3.Err, c3.Result)
		}
	})
}

func TestPeerNotificationsPrecedeResponse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		var mu sync.Mutex
		var atA []int64
		var atB []string
		var bRef atomic.Pointer[protocol.Peer]
		a, b := startPeers(t, tr,
			protocol.PeerConfig{OnNotify: func(method string, body []byte) {
				var n int64
				if method != "tick" || msgpack.Unmarshal(body, &n) != nil {
					t.Errorf("unexpected notification %q %x", method, body)
					return
				}
				mu.Lock()
				atA = append(atA, n)
				mu.Unlock()
			}},
			protocol.PeerConfig{
				OnNotify: func(method string, body []byte) {
					mu.Lock()
					atB = append(atB, method)
					mu.Unlock()
				},
				Handlers: map[string]protocol.Handler{
					"emit": func(_ context.Context, body []byte) (any, error) {
						var k int64
						if err := msgpack.Unmarshal(body, &k); err != nil {
							return nil, err
						}
						for i := range k {
							if err := bRef.Load().Notify("tick", i); err != nil {
								return nil, err
							}
						}
						return k, nil
					},
					"seen": func(context.Context, []byte) (any, error) {
						mu.Lock()
						defer mu.Unlock()
						return atB, nil
					},
				},
			})
		bRef.Store(b)
		ctx := testCtx(t)

		// Output a handler sends before it returns has been handled by the
		// time the caller has the result.
		for round := 0; round < 5; round++ {
			mu.Lock()
			atA = nil
			mu.Unlock()
			const k = 60
			if _, err := a.Call(ctx, "emit", k); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := append([]int64(nil), atA...)
			mu.Unlock()
			if len(got) != k {
				t.Fatalf("round %d: %d notifications before the response, want %d", round, len(got), k)
			}
			for i, n := range got {
				if n != int64(i) {
					t.Fatalf("round %d: notification %d is %d: out of order", round, i, n)
				}
			}
		}

		// The same holds the other way: a request is served after the
		// notifications sent before it. $cancel is consumed by the peer,
		// never passed on.
		want := []string{"n0", "n1", "n2", "n3"}
		for i, m := range want {
			if err := a.Notify(m, nil); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				if err := a.Notify(protocol.MethodCancel, uint32(4242)); err != nil {
					t.Fatal(err)
				}
			}
		}
		res, err := a.Call(ctx, "seen", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := unmarshal[[]string](t, res); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("seen %v, want %v", got, want)
		}
	})
}

func TestPeerUnknownMethod(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{"echo": echo}})
		ctx := testCtx(t)
		_, err := a.Call(ctx, "no_such_method", nil)
		e := wantCode(t, err, protocol.CodeProtocol)
		if !bytes.Contains([]byte(e.Msg), []byte("no_such_method")) {
			t.Errorf("message %q does not name the method", e.Msg)
		}
		if res, err := a.Call(ctx, "echo", 5); err != nil || unmarshal[int](t, res) != 5 {
			t.Errorf("after an unknown method: %x, %v", res, err)
		}
		// A peer without handlers answers every request the same way.
		_, err = callerOfBarePeer(t, tr).Call(ctx, "echo", nil)
		wantCode(t, err, protocol.CodeProtocol)
	})
}

func callerOfBarePeer(t *testing.T, tr transport) *protocol.Peer {
	a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{})
	return a
}

func TestPeerHandlerErrorsCross(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		returns := map[string]error{
			"full":     fmt.Errorf("wrapped: %w", fullError()),
			"bare":     &protocol.Error{Code: protocol.CodeQueueFull},
			"plain":    errors.New("boom"),
			"canceled": context.Canceled,
			"deadline": fmt.Errorf("op: %w", context.DeadlineExceeded),
		}
		want := map[string]protocol.Error{
			"full":     *fullError(),
			"bare":     {Code: protocol.CodeQueueFull},
			"plain":    {Code: protocol.CodeInterpreter, Msg: "boom"},
			"canceled": {Code: protocol.CodeCanceled, Msg: context.Canceled.Error()},
			"deadline": {Code: protocol.CodeDeadlineExceeded, Msg: "op: " + context.DeadlineExceeded.Error()},
		}
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"fail": func(_ context.Context, body []byte) (any, error) {
				var name string
				if err := msgpack.Unmarshal(body, &name); err != nil {
					return nil, err
				}
				return "ignored result", returns[name]
			},
		}})
		for name, w := range want {
			res, err := a.Call(testCtx(t), "fail", name)
			var e *protocol.Error
			if !errors.As(err, &e) {
				t.Errorf("%s: got %T %v, want a *protocol.Error", name, err, err)
				continue
			}
			if *e != w {
				t.Errorf("%s: got %+v\nwant %+v", name, *e, w)
			}
			if res != nil {
				t.Errorf("%s: result %x alongside the error", name, res)
			}
		}
	})
}

func TestPeerResults(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"raw": func(context.Context, []byte) (any, error) { return msgpack.RawMessage{0x92, 0x01, 0xa1, 'x'}, nil },
			"values": func(context.Context, []byte) (any, error) {
				var c protocol.Codec
				b, err := c.MarshalList([]any{1, []any{"a"}}, protocol.Fallback)
				return msgpack.RawMessage(b), err
			},
			"plain":  func(context.Context, []byte) (any, error) { return map[string]int{"k": 1}, nil },
			"nil":    func(context.Context, []byte) (any, error) { return nil, nil },
			"chan":   func(context.Context, []byte) (any, error) { return make(chan int), nil },
			"strict": func(context.Context, []byte) (any, error) { return refusedResult{}, nil },
		}})
		ctx := testCtx(t)
		var c protocol.Codec
		check := func(method string, want any) {
			t.Helper()
			res, err := a.Call(ctx, method, nil)
			if err != nil {
				t.Errorf("%s: %v", method, err)
				return
			}
			got, err := c.Unmarshal(res)
			if err != nil || !valuesEqual(got, want) {
				t.Errorf("%s: %s, %v; want %s", method, show(got), err, show(want))
			}
		}
		check("raw", []any{int64(1), "x"})
		check("values", []any{int64(1), []any{"a"}})
		check("plain", map[string]any{"k": int64(1)})
		check("nil", nil)

		// A result that cannot be encoded still answers the caller.
		_, err := a.Call(ctx, "chan", nil)
		var e *protocol.Error
		if !errors.As(err, &e) {
			t.Errorf("unencodable result: %v, want a *protocol.Error", err)
		}
		_, err = a.Call(ctx, "strict", nil)
		wantCode(t, err, protocol.CodeNotShareable)
		check("raw", []any{int64(1), "x"})
	})
}

// refusedResult fails to encode with a typed error, as a value the codec
// refuses does.
type refusedResult struct{}

func (refusedResult) EncodeMsgpack(*msgpack.Encoder) error {
	return protocol.Errorf(protocol.CodeNotShareable, "refused")
}

func TestPeerParamsThatCannotBeEncoded(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		a, raw := startRaw(t, tr, protocol.PeerConfig{})
		if _, err := a.Go("m", make(chan int)); err == nil {
			t.Error("Go accepted a chan as params")
		}
		_, err := a.Go("m", refusedResult{})
		wantCode(t, err, protocol.CodeNotShareable)
		_, err = a.Call(testCtx(t), "m", refusedResult{})
		wantCode(t, err, protocol.CodeNotShareable)

		// Nothing of the failed requests reached the wire.
		go a.Notify("after", nil)
		if m := readMsg(t, raw); m.Kind != protocol.KindNotification || m.Method != "after" {
			t.Errorf("first frame on the wire: %+v", m)
		}
	})
}

func TestPeerBodyOutlivesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		var mu sync.Mutex
		var kept [][]byte
		a, _ := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{
			"keep": func(_ context.Context, body []byte) (any, error) {
				mu.Lock()
				kept = append(kept, body)
				mu.Unlock()
				return nil, nil
			},
		}})
		ctx := testCtx(t)
		const n = 30
		for i := range n {
			if _, err := a.Call(ctx, "keep", fmt.Sprintf("param-%03d", i)); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(kept) != n {
			t.Fatalf("kept %d bodies", len(kept))
		}
		for i, b := range kept {
			if got := unmarshal[string](t, b); got != fmt.Sprintf("param-%03d", i) {
				t.Errorf("body %d now reads %q", i, got)
			}
		}
	})
}

func TestPeerRemoteCloseFailsPendingCalls(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		blk := newBlocker()
		a, b := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{"block": blk.handle}})
		ctx := testCtx(t)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := a.Call(ctx, "block", nil)
				errs <- err
			}()
		}
		for range 3 {
			recv(t, blk.started, "handler start")
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for range 3 {
			wantCode(t, recv(t, errs, "pending call"), protocol.CodeClosed)
		}
		// Closing its own end cancels the handlers b was running.
		for range 3 {
			if err := recv(t, blk.ended, "handler after close"); !errors.Is(err, context.Canceled) {
				t.Errorf("handler ctx: %v", err)
			}
		}
		waitClosed(t, a.Done(), "a.Done")
		if err := a.Err(); err == nil || errors.Is(err, protocol.ErrPeerClosed) {
			t.Errorf("a.Err() = %v, want the read error", err)
		}
		// Later calls fail the same way as the pending ones did.
		_, err := a.Call(ctx, "block", nil)
		wantCode(t, err, protocol.CodeClosed)
		_, err = a.Go("block", nil)
		wantCode(t, err, protocol.CodeClosed)
	})
}

func TestPeerClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		blk := newBlocker()
		a, b := startPeers(t, tr, protocol.PeerConfig{}, protocol.PeerConfig{Handlers: map[string]protocol.Handler{"block": blk.handle}})
		ctx := testCtx(t)
		errs := make(chan error, 1)
		go func() {
			_, err := a.Call(ctx, "block", nil)
			errs <- err
		}()
		recv(t, blk.started, "handler start")
		if a.Err() != nil {
			t.Errorf("Err() = %v while open", a.Err())
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case <-a.Done():
		default:
			t.Error("Done not closed when Close returned")
		}
		if err := recv(t, errs, "pending call"); !errors.Is(err, protocol.ErrPeerClosed) {
			t.Errorf("pending call: %v, want ErrPeerClosed", err)
		}
		if err := a.Err(); err != protocol.ErrPeerClosed {
			t.Errorf("Err() = %v, want ErrPeerClosed", err)
		}
		if _, err := a.Call(ctx, "block", nil); !errors.Is(err, protocol.ErrPeerClosed) {
			t.Errorf("Call after Close: %v", err)
		}
		if _, err := a.Go("block", nil); !errors.Is(err, protocol.ErrPeerClosed) {
			t.Errorf("Go after Close: %v", err)
		}
		if err := a.Notify("n", nil); err == nil {
			t.Error("Notify after Close succeeded")
		}
		waitClosed(t, b.Done(), "the other side's Done")
		if err := recv(t, blk.ended, "other side's handler"); !errors.Is(err, context.Canceled) {
			t.Errorf("other side's handler ctx: %v", err)
		}

		second := make(chan struct{})
		go func() {
			a.Close()
			close(second)
		}()
		waitClosed(t, second, "second Close")
	})
}

func TestPeerHandlerContextEndsWithSession(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		settleGoroutines(t)
		blk := newBlocker()
		a, raw := startRaw(t, tr, protocol.PeerConfig{Handlers: map[string]protocol.Handler{"block": blk.handle}})
		writeMsg(t, raw, &protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: "block"})
		recv(t, blk.started, "handler start")
		raw.Close()
		if err := recv(t, blk.ended, "handler after the connection ended"); !errors.Is(err, context.Canceled) {
			t.Errorf("handler ctx: %v", err)
		}
		waitClosed(t, a.Done(), "Done")
	})
}

func TestPeerGarbledInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		close bool // close the raw end after writing
		code  protocol.Code
		is    error // when set, what Err must match instead of code
	}{
		{name: "invalid msgpack", input: frameOf([]byte{0xc1, 0xff}), code: protocol.CodeProtocol},
		{name: "not an array", input: frameOf(fixstr("hi")), code: protocol.CodeProtocol},
		{name: "unknown kind", input: frameOf([]byte{0x94, 0x09, 0x01, 0xa1, 'm', 0xc0}), code: protocol.CodeProtocol},
		{name: "trailing bytes", input: frameOf([]byte{0x93, 0x02, 0xa1, 'm', 0xc0, 0x00}), code: protocol.CodeProtocol},
		{name: "empty frame", input: frameOf(nil), code: protocol.CodeProtocol},
		{name: "cancel with a string id", input: frameOf(cat([]byte{0x93, 0x02}, fixstr(protocol.MethodCancel), fixstr("x"))), code: protocol.CodeProtocol},
		{name: "oversize length", input: be32(0xffffffff), is: protocol.ErrFrameTooLarge},
		{name: "truncated frame", input: cat(be32(100), []byte("short")), close: true, is: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, tr transport) {
				settleGoroutines(t)
				blk := newBlocker()
				a, raw := startRaw(t, tr, protocol.PeerConfig{Handlers: map[string]protocol.Handler{"block": blk.handle}})

				// A call of a's and a handler of a's are in flight.
				calls := make(chan *protocol.Call, 1)
				go func() {
					c, err := a.Go("pending", nil)
					if err != nil {
						t.Errorf("Go: %v", err)
					}
					calls <- c
				}()
				readMsg(t, raw)
				c := recv(t, calls, "Go")
				writeMsg(t, raw, &protocol.Message{Kind: protocol.KindRequest, ID: 1, Method: "block"})
				recv(t, blk.started, "handler start")

				raw.Write(tc.input)
				if tc.close {
					raw.Close()
				}
				waitClosed(t, a.Done(), "Done after garbage")
				err := a.Err()
				if tc.is != nil {
					if !errors.Is(err, tc.is) {
						t.Errorf("Err() = %v, want %v", err, tc.is)
					}
				} else {
					wantCode(t, err, tc.code)
				}
				waitClosed(t, c.Done, "pending call")
				var e *protocol.Error
				if !errors.As(c.Err, &e) {
					t.Errorf("pending call failed with %T %v, want a *protocol.Error", c.Err, c.Err)
				} else if want := tc.code; want == "" && e.Code != protocol.CodeClosed || want != "" && e.Code != want {
					t.Errorf("pending call failed with code %q", e.Code)
				}
				if err := recv(t, blk.ended, "handler"); !errors.Is(err, context.Canceled) {
					t.Errorf("handler ctx: %v", err)
				}
				if _, err := a.Go("after", nil); err == nil {
					t.Error("Go succeeded on an ended session")
				}
			})
		})
	}
}

// The other side answers a cancelled request with its handler's own
// cancellation error. That answer can arrive while the caller is still
// sending $cancel; the caller must still get its ctx's error, or
// errors.Is(err, ctx.Err()) fails for a cancelled call. An unbuffered pipe
// lets the test hold the caller inside that window.
func TestPeerCancelledCallReturnsContextError(t *testing.T) {
	settleGoroutines(t)
	c1, raw := net.Pipe()
	a := protocol.NewPeer(c1, protocol.PeerConfig{})
	t.Cleanup(func() {
		raw.Close()
		a.Close()
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, "work", nil)
		done <- err
	}()
	req := readMsg(t, raw)
	cancel()

	// Read only the length of the $cancel frame: its sender is now blocked
	// in the middle of writing it.
	raw.SetReadDeadline(time.Now().Add(waitLimit))
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(raw, hdr); err != nil {
		t.Fatal(err)
	}
	writeMsg(t, raw, &protocol.Message{Kind: protocol.KindResponse, ID: req.ID,
		Error: &protocol.Error{Code: protocol.CodeCanceled, Msg: "context canceled"}})
	// Once this frame is taken, the response before it has been dispatched.
	writeMsg(t, raw, &protocol.Message{Kind: protocol.KindNotification, Method: "sync"})
	rest := make([]byte, int(hdr[0])<<24|int(hdr[1])<<16|int(hdr[2])<<8|int(hdr[3]))
	if _, err := io.ReadFull(raw, rest); err != nil {
		t.Fatal(err)
	}
	if m, err := protocol.DecodeMessage(rest); err != nil || m.Method != protocol.MethodCancel {
		t.Fatalf("frame after cancel: %+v, %v", m, err)
	}
	if err := recv(t, done, "cancelled call"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call returned %T %v, want context.Canceled", err, err)
	}
}
