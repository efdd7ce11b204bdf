// Package supervisor is the host side of subinterp. It spawns one worker
// process per interpreter through hashicorp/go-plugin, hands each two
// socketpairs (the msgpack session, and the call channel that carries one
// call at a time with the worker's own requests), takes the process over
// from go-plugin once it has handshaken, and owns everything that
// must outlive a single call: interpreter IDs and running state,
// cancellation with a kill after a grace period, crash detection with exit
// status and stderr, and reaping. An idle interpreter costs the host three
// descriptors (the two sockets and the worker's stderr), two goroutines
// (the session's reader and the stderr's) and no thread. It knows nothing of the CLI or of the public API's types:
// values cross it as raw msgpack produced by the protocol package.
//
// Lifecycle of an interpreter: Create spawns and handshakes the worker
// (state "running" in the process sense, idle in PEP 734's). A call marks it
// running until the worker answers. Close, a worker crash or Supervisor.Close
// end it; from then on every operation on its ID fails with
// protocol.CodeNotFound, and its worker process has been reaped.
package supervisor
