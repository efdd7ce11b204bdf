package socket_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/socket"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/protocol"
)

// tlsPair connects a TLS client and server over loopback TCP, each over an
// Unpolled, handshaken.
func tlsPair(t *testing.T) (client, server *tls.Conn) {
	t.Helper()
	serverCfg, caPEM, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tl := tls.NewListener(socket.UnpolledListener{Listener: l}, serverCfg)
	accepted := make(chan *tls.Conn, 1)
	go func() {
		c, err := tl.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			tc.Close()
			tc = nil
		}
		accepted <- tc
	}()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clientCfg := testcert.Client(caPEM)
	clientCfg.ServerName = "127.0.0.1"
	client = tls.Client(socket.NewUnpolled(nc), clientCfg)
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("the server's handshake failed")
	}
	return client, server
}

// A call channel over TLS made blocking on both ends carries messages
// both ways, and Close ends a read in progress on it, though the socket
// is no longer the poller's.
func TestBlockingTLS(t *testing.T) {
	c, s := tlsPair(t)
	crw, ok := socket.Blocking(c, 0)
	if !ok {
		t.Fatal("the client's TLS connection was not made blocking")
	}
	srw, ok := socket.Blocking(s, time.Second)
	if !ok {
		t.Fatal("the server's TLS connection was not made blocking")
	}
	cc, sc := protocol.NewCallConn(crw), protocol.NewCallConn(srw)
	defer sc.Close()
	if err := cc.Request(1, "echo", "hi"); err != nil {
		t.Fatal(err)
	}
	m, err := sc.Read()
	if err != nil || m.Kind != protocol.KindRequest || m.Method != "echo" {
		t.Fatalf("read %+v, %v; want the request", m, err)
	}
	if err := sc.Respond(m.ID, nil, "hi"); err != nil {
		t.Fatal(err)
	}
	if m, err := cc.Read(); err != nil || m.Kind != protocol.KindResponse || m.ID != 1 {
		t.Fatalf("read %+v, %v; want the response", m, err)
	}

	read := make(chan error, 1)
	go func() {
		_, err := cc.Read()
		read <- err
	}()
	if err := cc.Close(); err != nil {
		t.Logf("Close: %v", err) // the close_notify may find the socket shut
	}
	select {
	case err := <-read:
		if err == nil {
			t.Error("a read in progress returned a message after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a read in progress on a blocking TLS channel")
	}
	if _, err := sc.Read(); err == nil {
		t.Error("the server read a message after the client closed")
	}
}

// CloseRead of a blocking TLS channel ends its reading once what was sent
// is read, and its writes still reach the peer.
func TestBlockingTLSCloseRead(t *testing.T) {
	c, s := tlsPair(t)
	crw, _ := socket.Blocking(c, 0)
	srw, ok := socket.Blocking(s, time.Second)
	if !ok {
		t.Fatal("the server's TLS connection was not made blocking")
	}
	cc, sc := protocol.NewCallConn(crw), protocol.NewCallConn(srw)
	defer cc.Close()
	defer sc.Close()
	if err := cc.Request(7, "echo", 1); err != nil {
		t.Fatal(err)
	}
	m, err := sc.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.CloseRead(); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Read(); err == nil {
		t.Error("a read after CloseRead returned a message")
	}
	if err := sc.Respond(m.ID, nil, 1); err != nil {
		t.Fatalf("a write after CloseRead: %v", err)
	}
	if m, err := cc.Read(); err != nil || m.ID != 7 {
		t.Fatalf("the client read %+v, %v; want the answer written after CloseRead", m, err)
	}
}
