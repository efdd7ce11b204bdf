// Package daemon is the subinterp supervisor daemon: one long-lived
// supervisor whose interpreters clients drive over a socket, through
// interpreters.Dial or the subinterp CLI.
//
// Serve listens on a Unix socket (mode 0600; each connection's peer user is
// checked with SO_PEERCRED) and optionally on TCP (TLS plus a token). Each
// connection holds one control session of the protocol package: a hello
// that checks the protocol version and the credentials, then requests that
// mirror a local supervisor's operations. Interpreters belong to the daemon
// and outlive the connection that created them; the queue references a
// connection holds are released when it closes. Output of a call goes back
// to the connection that made it.
//
// Shutdown (the context of Serve ending, on SIGTERM, SIGINT or SIGHUP in
// the CLI) stops accepting, ends the queue operations that are only
// waiting, lets in-flight calls finish for a grace period (cut short by
// Abort, a second signal in the CLI), cancels what is left, closes every
// interpreter and removes the socket.
package daemon
