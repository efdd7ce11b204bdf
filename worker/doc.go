// Package worker is the process side of subinterp: one gopher-lua VM per
// process, sandboxed by default, with print and io.write captured and sent
// to the supervisor in order with the replies, interrupts that stop running
// Lua promptly, and per-call limits.
//
// A worker is the host executable re-executed by the supervisor with
// protocol.WorkerArg as its first argument and go-plugin's handshake cookie
// in its environment. This package's init function recognises that and runs
// the worker instead of the host's main, which is why importing subinterp
// needs no setup. The worker answers go-plugin's handshake itself, without
// linking go-plugin (whose gRPC and protobuf would otherwise initialise in
// every worker), then serves the msgpack session on the socketpair it
// inherits as fd 3 (cancellation and stats) and the call channel on fd 4
// (calls, and the Lua module's requests to the supervisor while one runs);
// when the session ends, the supervisor is gone and the worker exits.
//
// # gopher-lua internals
//
// Two fixes reach into gopher-lua's unexported internals: luafix.go (its
// upvalue bugs after errors, upstream issue 448, and linear tracebacks)
// and fastloop.go (a cheaper interrupt poll, and dropping stale call
// frames). Both were audited against gopher-lua v1.1.2 (auditedLuaVersion).
// Each checks at start-up, with reflect, that the fields it uses are still
// there with the same types and offsets; fastloop.go also requires that
// exact version, since it copies gopher-lua's loop. When a check fails the
// worker degrades, never panics: protected calls take the portable route of
// portable.go (each in a thread of its own, same answers, slower), and
// calls run gopher-lua's own loop. Building with the tag
// subinterp_nointernals forces both fallbacks, and `make test` runs the
// worker and integration tests that way as well.
//
// To audit a new gopher-lua release: read the diff of state.go (LState,
// callFrame, Upvalue, Debug, PCall, raiseError, closeUpvalues) and vm.go
// (mainLoopWithContext, jumpTable) against the mirrors in fastloop.go and
// the field list in luafix.go; check whether issue 448 is fixed upstream
// (then luafix.go may go); update the mirrors and auditedLuaVersion; and
// run `make test`, which runs everything with and without the internals.
package worker
