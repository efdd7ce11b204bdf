package protocol

// Call streams carry a client's calls to a daemon without a hand-off
// between goroutines on either side, as the call channel carries a
// supervisor's calls to a worker.
//
// Beside its session a client opens call streams: more connections to the
// daemon, each admitted as a session is (the same user check on a Unix
// socket, the same token on TCP, refused once shutdown began) and attached
// to the session by a hello whose Attach names it and gives the key the
// daemon answered the session's hello with. A stream carries one request
// at a time: StreamMethods only. The daemon reads it, serves it and writes
// the call's output notifications and then its response, all on the one
// goroutine that serves the stream; the client writes the request and
// reads until the response on the goroutine that makes the call. What the
// stream's calls take (queue references, output) belongs to its session,
// and the streams end with it.
//
// A request on a stream is cancelled with the session notification
// ControlStreamCancel; the stream's reader is busy serving the request.

// StreamAttach attaches a call stream to the session Session, whose hello
// the daemon answered with Key.
type StreamAttach struct {
	Session uint64 `msgpack:"session"`
	Key     []byte `msgpack:"key"`
}

// StreamMethods are the control methods a call stream serves: those that
// run in an interpreter or wait on a queue, whose round trip is what a
// client pays most.
var StreamMethods = []string{ControlCall, ControlExec, ControlPrepareMain, ControlQueueGet, ControlQueuePut}

// ControlStreamCancel is the session notification that cancels request
// Call on the session's stream Stream. One that arrives before its request
// was read cancels the request as it starts.
const ControlStreamCancel = "stream.cancel"

// StreamCancelParams are ControlStreamCancel's params.
type StreamCancelParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Stream   uint64
	Call     uint32
}

// NotifyHostCancel is the notification a daemon sends a client, with
// StreamCancelParams naming a call stream and a host call it made on it,
// when the call that host call serves ended for another reason than its
// deadline (the client's deadline passes in the client too): its worker
// died, or it was cancelled. The function's context ends.
const NotifyHostCancel = "$host.cancel"
