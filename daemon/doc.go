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
// With Config.HTTPAddr it serves a status page (status.go): the
// interpreters, queues and recent worker exits, kept live by server-sent
// events, with buttons that close an interpreter or restart one that has a
// restart policy. It serves only loopback unless TLS is configured; its
// script and style are embedded and its Content-Security-Policy admits
// nothing else; its actions need the token of Config.TokenFile in a header
// and a request from the page itself (Origin, Sec-Fetch-Site).
//
// Shutdown (the context of Serve ending, on SIGTERM, SIGINT or SIGHUP in
// the CLI) stops accepting, ends the queue operations that are only
// waiting, lets in-flight calls finish for a grace period (cut short by
// Abort, a second signal in the CLI), cancels what is left, closes every
// interpreter and removes the socket.
package daemon
