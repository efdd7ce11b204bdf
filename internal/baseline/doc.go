// Package baseline provides the reference points that subinterp's
// performance claims are measured against, so every benchmark can compare
// itself with baselines measured in the same run on the same machine:
//
//   - Raw: msgpack echo over a unix socket to a separate process, framed like
//     the protocol package, with nothing else in the way: the floor.
//   - Plugin: a stock hashicorp/go-plugin net/rpc (gob) echo plugin, the
//     off-the-shelf alternative to subinterp's own data plane.
//   - InProcessLua: a gopher-lua call in the calling process, the cost of
//     the interpreter without any process boundary.
//
// Raw and Plugin run real child processes: the current executable re-executed
// with an argv marker and a matching environment variable. The package's
// init function recognises that pair and turns the process into the child
// before any other package that imports this one is initialised, so a test
// binary only has to import the package; no TestMain is needed. Both markers
// are required so that neither a stray argument nor an inherited variable
// alone can turn an ordinary program into an echo server. The child writes
// nothing to stdout, which go-plugin reserves for its handshake line.
//
// A child exits when its parent dies, even if the parent never calls Close:
// it holds the read end of a lifeline pipe whose only writer is the parent,
// and on Linux it also gets SIGKILL through Pdeathsig. Without this, children
// of a crashed or killed benchmark run would keep running and skew every
// later measurement.
//
// Raw and Plugin need a POSIX system: both rely on inherited file
// descriptors.
//
// Raw is a synchronous floor: the caller's goroutine writes a frame and reads
// the reply, and the child answers on the goroutine that read the request.
// An RPC layer that multiplexes calls over a connection adds goroutine
// hand-offs on both sides, and that cost shows up as its distance from Raw.
//
// go test merges a test binary's stderr into its stdout, where go-plugin's
// occasional yamux messages (see Plugin.Close) can split result lines. For
// output that tools can parse, build the test binary and discard its stderr:
//
//	go test -c -o baseline.test ./internal/baseline
//	./baseline.test -test.run='^$' -test.bench=. 2>/dev/null
package baseline
