package protocol

import (
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// The control protocol is what a client (interpreters.Dial, the subinterp
// CLI) and a daemon (subinterp serve) speak over the daemon's socket. It is
// the same framing and the same symmetric Peer session as between a
// supervisor and its workers, with its own methods.
//
// The first frame a client sends is a ControlHello request, answered before
// the session starts: the daemon checks the protocol version and, on TCP,
// the token, and closes the connection after a refusal. Only then do both
// sides start a Peer, so no other request can arrive unauthenticated.
//
// Output of an Exec or Call travels back to the calling connection as
// NotifyOutput notifications with OutputParams, sent before the response,
// so a client has written all of a call's output when the call returns.
// Cancelling a request ($cancel) cancels the call in the daemon.

// ControlHello opens a control session: HelloParams → HelloResult.
const ControlHello = "hello"

// Control methods a daemon serves once the hello succeeded. They mirror the
// operations of a local supervisor.
const (
	ControlCreate      = "create"       // CreateParams → int64 id
	ControlExec        = "exec"         // ControlExecParams → nil
	ControlCall        = "call"         // ControlCallParams → msgpack array of the results
	ControlPrepareMain = "prepare_main" // InterpPrepareParams → nil
	ControlClose       = "close"        // IDParams → nil
	ControlIsRunning   = "is_running"   // IDParams → bool
	ControlPid         = "pid"          // IDParams → int
	ControlExists      = "exists"       // IDParams → bool
	ControlList        = "list"         // ListParams → []InterpInfo, oldest first
	ControlStats       = "stats"        // IDParams → WorkerStats

	ControlQueueCreate  = "queue.create"  // QueueCreateParams → int64 id, one reference for the connection
	ControlQueueInfo    = "queue.info"    // IDParams → QueueInfo
	ControlQueuePut     = "queue.put"     // QueuePutParams → nil
	ControlQueueGet     = "queue.get"     // QueueGetParams → QueueGetResult
	ControlQueueRetain  = "queue.retain"  // IDParams → nil: one more reference for the connection
	ControlQueueRelease = "queue.release" // IDParams → nil: one reference of the connection less
	ControlQueueList    = "queue.list"    // nil → []QueueEntry, by id
	ControlQueuePin     = "queue.pin"     // IDParams → nil: a reference held by the daemon itself
	ControlQueueUnpin   = "queue.unpin"   // IDParams → nil: drops a reference ControlQueuePin took
)

// CodePermissionDenied refuses a client: a Unix socket peer whose user is
// not allowed, or a TCP client without the right token.
const CodePermissionDenied Code = "permission_denied"

// HelloParams is the client's first request. Its fields are encoded by
// name, not position, so that daemons and clients of every version can read
// each other's hello and say clearly that they do not match.
type HelloParams struct {
	Version int    `msgpack:"version"`
	Token   string `msgpack:"token,omitempty"`
	// Attach, when set, opens a call stream of an existing session
	// instead of a session.
	Attach *StreamAttach `msgpack:"attach,omitempty"`
}

// HelloResult is the daemon's answer to a hello it accepts.
type HelloResult struct {
	Version int `msgpack:"version"`
	// Pid is the daemon's process id: the main interpreter of its
	// interpreters.
	Pid int `msgpack:"pid"`
	// Session and Key, in the answer to a session's hello, are what a
	// call stream of the session attaches with.
	Session uint64 `msgpack:"session,omitempty"`
	Key     []byte `msgpack:"key,omitempty"`
	// Stream, in the answer to a call stream's hello, is the stream's
	// number within its session, which ControlStreamCancel names.
	Stream uint64 `msgpack:"stream,omitempty"`
}

// CreateParams creates an interpreter. Zero limits take the daemon's
// defaults.
type CreateParams struct {
	_msgpack      struct{} `msgpack:",as_array"`
	Stdlib        bool
	MemoryLimit   int64
	CPULimitNs    int64
	CallTimeoutNs int64
	OutputLimit   int64
	// Restart, when set, gives the interpreter a restart policy.
	Restart *RestartParams
	// CPUTotalNs is the CPU time the interpreter may use in all.
	CPUTotalNs int64
	// CreateLimit caps the interpreters its Lua code may create.
	CreateLimit int64
	// HostFuncs are the client's host functions the interpreter's scripts
	// may call; Modules the sources of its host modules, by name.
	HostFuncs []HostFuncRef
	Modules   map[string]string
	// Confined walls the interpreter's scripts in (see
	// interpreters.WithConfined).
	Confined bool
}

// RestartParams is a restart policy on the wire. With Notify the daemon
// sends the creating connection a NotifyRestart notification for every
// restart attempt.
type RestartParams struct {
	_msgpack     struct{} `msgpack:",as_array"`
	MaxRestarts  int
	PeriodNs     int64
	InitScript   string
	BackoffNs    int64
	MaxBackoffNs int64
	Notify       bool
}

// NotifyRestart is the notification a daemon sends with a RestartNotice.
const NotifyRestart = "$restart"

// RestartNotice reports one restart attempt of an interpreter.
type RestartNotice struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Attempt  int
	Cause    *Error // how the previous worker ended
	Err      *Error // why the attempt failed; nil on success
	GaveUp   bool
}

// ControlExecParams runs a chunk in an interpreter.
type ControlExecParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Source   string
	// TimeoutNs is the caller's remaining deadline; 0 means none. The
	// daemon applies it itself so a deadline reads as one, not as a
	// cancellation.
	TimeoutNs int64
	// Name is the chunk's name; "" means "<string>".
	Name string
}

// ControlCallParams calls a function expression in an interpreter.
type ControlCallParams struct {
	_msgpack  struct{} `msgpack:",as_array"`
	ID        int64
	Fn        string
	Args      msgpack.RawMessage
	TimeoutNs int64
}

// ListParams asks for the live interpreters; Stats adds each worker's
// resource use, which costs one round trip to every worker.
type ListParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Stats    bool
}

// InterpInfo describes a live interpreter of a daemon.
type InterpInfo struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Pid      int
	// CreatedUnixNano is when the interpreter was created.
	CreatedUnixNano int64
	Running         bool
	Calls           int64
	// RSSBytes and CPUNanos are filled only when stats were asked for and
	// the worker answered.
	RSSBytes int64
	CPUNanos int64
}

// OutputParams is the body of a NotifyOutput notification from a daemon:
// output an interpreter wrote during a call this connection made.
type OutputParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Data     []byte
}

// QueueEntry describes a queue in a ControlQueueList answer.
type QueueEntry struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	MaxSize  int
	Unbound  UnboundMode
	Size     int
	// Pinned counts the references the daemon holds itself.
	Pinned int
	// Waiting counts the gets and puts blocked on the queue now.
	Waiting int
}

// ClientHello sends p as the hello request on rw and reads the answer. It
// must be the first exchange on a new connection; the caller bounds it with
// a deadline on the connection. A refusal is returned as the daemon's
// *Error.
func ClientHello(rw io.ReadWriter, p HelloParams) (HelloResult, error) {
	var res HelloResult
	body, err := msgpack.Marshal(&p)
	if err != nil {
		return res, err
	}
	frame, err := AppendMessage(nil, &Message{Kind: KindRequest, ID: 1, Method: ControlHello, Body: body})
	if err != nil {
		return res, err
	}
	if _, err := rw.Write(frame); err != nil {
		return res, err
	}
	b, err := ReadFrame(rw, nil)
	if err != nil {
		return res, err
	}
	m, err := DecodeMessage(b)
	if err != nil {
		return res, err
	}
	if m.Kind != KindResponse || m.ID != 1 {
		return res, malformed("hello: unexpected message kind %d id %d", m.Kind, m.ID)
	}
	if m.Error != nil {
		return res, m.Error
	}
	if err := msgpack.Unmarshal(m.Body, &res); err != nil {
		return res, malformed("hello result: %v", err)
	}
	return res, nil
}

// ReadHello reads a client's hello request from r: the first frame of a
// control connection. It returns the request's id for AnswerHello.
func ReadHello(r io.Reader) (HelloParams, uint32, error) {
	var p HelloParams
	b, err := ReadFrame(r, nil)
	if err != nil {
		return p, 0, err
	}
	m, err := DecodeMessage(b)
	if err != nil {
		return p, 0, err
	}
	if m.Kind != KindRequest || m.Method != ControlHello {
		return p, m.ID, Errorf(CodeProtocol, "protocol: the first request must be %q, got %q", ControlHello, m.Method)
	}
	if err := msgpack.Unmarshal(m.Body, &p); err != nil {
		return p, m.ID, malformed("hello: %v", err)
	}
	return p, m.ID, nil
}

// AnswerHello writes the answer to a hello: res when herr is nil, else the
// refusal.
func AnswerHello(w io.Writer, id uint32, res HelloResult, herr *Error) error {
	var body []byte
	if herr == nil {
		var err error
		if body, err = msgpack.Marshal(&res); err != nil {
			return err
		}
	}
	frame, err := AppendMessage(nil, &Message{Kind: KindResponse, ID: id, Error: herr, Body: body})
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// VersionMismatch is the daemon's refusal of a client of another protocol
// version. It names both versions, so whoever reads it knows which side to
// upgrade.
func VersionMismatch(client, daemon int) *Error {
	return &Error{Code: CodeVersion, Msg: fmt.Sprintf(
		"protocol version mismatch: the client speaks version %d, the daemon speaks version %d; use a client and a daemon of the same release",
		client, daemon)}
}
