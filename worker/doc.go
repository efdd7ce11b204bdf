// Package worker is the process side of subinterp: one gopher-lua VM per
// process, sandboxed by default, with print and io.write captured and sent
// to the supervisor in order with the replies, interrupts that stop running
// Lua promptly, and per-call limits.
//
// A worker is the host executable re-executed by the supervisor with
// protocol.WorkerArg as its first argument and go-plugin's handshake cookie
// in its environment. This package's init function recognises that and runs
// the worker instead of the host's main, which is why importing subinterp
// needs no setup. The worker serves the go-plugin handshake for its
// lifecycle, the msgpack session on the socketpair it inherits as fd 3
// (cancellation and stats), and the call channel on fd 4 (calls, and the
// Lua module's requests to the supervisor while one runs); when the session
// ends, the supervisor is gone and the worker exits.
package worker
