package socket_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/protocol"
)

// unixPair connects two Unix sockets through a listener in a fresh
// directory.
func unixPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	dir, err := os.MkdirTemp("", "cc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestBlockingUnixCallConn: a Unix socket made blocking still carries a
// call channel's messages both ways, and CloseRead lets the reader have
// every message sent before it, then EOF, while writing goes on.
func TestBlockingUnixCallConn(t *testing.T) {
	c, s := unixPair(t)
	rw, blocking := socket.Blocking(c, time.Minute)
	if _, ok := rw.(*os.File); !ok || !blocking {
		t.Fatalf("Blocking of a Unix socket gave a %T (blocking %v), want an *os.File", rw, blocking)
	}
	client, server := protocol.NewCallConn(rw), protocol.NewCallConn(s)
	defer client.Close()

	if err := client.Request(1, "ping", 7); err != nil {
		t.Fatal(err)
	}
	m, err := server.Read()
	if err != nil || m.Kind != protocol.KindRequest || m.Method != "ping" {
		t.Fatalf("the server read %+v, %v; want the ping", m, err)
	}
	if err := server.Respond(1, nil, 8); err != nil {
		t.Fatal(err)
	}
	if m, err := client.Read(); err != nil || m.Kind != protocol.KindResponse || m.ID != 1 {
		t.Fatalf("the client read %+v, %v; want the answer", m, err)
	}

	// Two requests in flight when the server stops reading: both are read,
	// then EOF, and the answer still gets through.
	for id := uint32(2); id <= 3; id++ {
		if err := client.Request(id, "ping", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := server.CloseRead(); err != nil {
		t.Fatal(err)
	}
	for id := uint32(2); id <= 3; id++ {
		if m, err := server.Read(); err != nil || m.ID != id {
			t.Fatalf("after CloseRead the server read %+v, %v; want request %d", m, err, id)
		}
	}
	if _, err := server.Read(); err != io.EOF {
		t.Errorf("after the requests sent before CloseRead: %v, want EOF", err)
	}
	if err := server.Respond(3, nil, "late"); err != nil {
		t.Fatalf("writing after CloseRead: %v", err)
	}
	if m, err := client.Read(); err != nil || m.ID != 3 {
		t.Errorf("the client read %+v, %v; want the answer written after CloseRead", m, err)
	}
}

// TestBlockingOthersAsTheyAre: a connection that is neither a Unix
// socket nor TLS is returned as it is.
func TestBlockingOthersAsTheyAre(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if rw, blocking := socket.Blocking(a, 0); rw != a || blocking {
		t.Errorf("Blocking of a pipe gave %v (blocking %v), want the pipe itself", rw, blocking)
	}
}
