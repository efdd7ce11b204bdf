// Package socket takes a connection's socket out of the Go runtime's
// poller once the connection is set up, for the call channels of the
// daemon and its clients: a goroutine waiting on a blocking socket sleeps
// in read(2) and the kernel wakes its thread when a message arrives,
// instead of the poller waking a thread to run the goroutine. Unix sockets
// are made blocking as they are; a TLS connection is made over an Unpolled,
// whose socket is made blocking after the handshake.
//
// It is apart from protocol because it needs the net package, which a
// worker, linking protocol, must not initialise before it takes over its
// process.
package socket
