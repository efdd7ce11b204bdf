package protocol

import "github.com/vmihailenco/msgpack/v5"

// Version is the wire version. go-plugin's handshake refuses a worker of
// another version, and the daemon refuses a client of another version.
const Version = 4

// Methods a supervisor calls on a worker.
const (
	MethodExec        = "exec"         // ExecParams → nil
	MethodCall        = "call"         // CallParams → msgpack array of the results
	MethodPrepareMain = "prepare_main" // PrepareMainParams → nil
	MethodStats       = "stats"        // nil → WorkerStats
	MethodConfigure   = "configure"    // WorkerConfig → nil: makes a spare worker an interpreter
)

// NotifyCallCancel is the session notification that cancels the call in
// progress on the call channel; its params are the call's id.
const NotifyCallCancel = "call.cancel"

// NotifyOutput is the notification a worker sends with interpreter output
// (the bytes of print and io.write, as msgpack bin). It travels on the call
// channel, so all output of a call precedes its response.
const NotifyOutput = "$out"

// ExecParams runs a chunk in the interpreter's globals.
type ExecParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Source   string
	// TimeoutNs is the call's remaining wall-clock budget; 0 means none.
	TimeoutNs int64
	// Name is the chunk's name in errors and tracebacks; "" means
	// "<string>".
	Name string
}

// CallParams calls a function expression with arguments.
type CallParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Fn       string
	// Args is a msgpack array of fallback-tier values.
	Args      msgpack.RawMessage
	TimeoutNs int64
}

// PrepareMainParams binds globals.
type PrepareMainParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	// Names is a msgpack map from global name to a strict-tier value.
	Names msgpack.RawMessage
}

// WorkerStats describes a worker process.
type WorkerStats struct {
	RSSBytes   int64 `msgpack:"rss"`
	CPUNanos   int64 `msgpack:"cpu_ns"`
	HeapBytes  int64 `msgpack:"heap"`
	Calls      int64 `msgpack:"calls"`
	Goroutines int   `msgpack:"goroutines"`
}

// WorkerConfig is what a worker is started with, or, for a spare, what it
// is configured with when claimed.
type WorkerConfig struct {
	// Spare starts a worker with no VM, waiting for MethodConfigure.
	Spare         bool  `json:"spare,omitempty" msgpack:"spare,omitempty"`
	InterpreterID int64 `json:"id" msgpack:"id"`
	// Stdlib opens the full Lua standard library.
	Stdlib bool `json:"stdlib,omitempty" msgpack:"stdlib,omitempty"`
	// MemoryLimit is the soft heap limit in bytes; 0 means none.
	MemoryLimit int64 `json:"memory_limit,omitempty" msgpack:"memory_limit,omitempty"`
	// CPULimitNs is the CPU time each call may use; 0 means none.
	CPULimitNs int64 `json:"cpu_limit_ns,omitempty" msgpack:"cpu_limit_ns,omitempty"`
	// CPUTotalNs is the CPU time the interpreter may use in all, soft and
	// then, a little later, by the kernel (RLIMIT_CPU); 0 means none.
	CPUTotalNs int64 `json:"cpu_total_ns,omitempty" msgpack:"cpu_total_ns,omitempty"`
	// OutputLimit is the number of output bytes each call may write; 0
	// means none.
	OutputLimit int64 `json:"output_limit,omitempty" msgpack:"output_limit,omitempty"`
	// HostFuncs names the host functions require("host") offers; a call
	// of one is a MethodHostCall.
	HostFuncs []string `json:"host_funcs,omitempty" msgpack:"host_funcs,omitempty"`
	// Modules names the host modules require finds; a module's source is
	// asked for (MethodHostModule) at its first require.
	Modules []string `json:"modules,omitempty" msgpack:"modules,omitempty"`
}

// UnboundMode says what happens to a queue item when the interpreter that
// put it is destroyed.
type UnboundMode uint8

// The unbound modes. Zero means "the queue's default" in a put.
const (
	UnboundReplace UnboundMode = 1 // Get returns the Unbound sentinel
	UnboundError   UnboundMode = 2 // Get fails with CodeItemDestroyed, consuming the item
	UnboundRemove  UnboundMode = 3 // the item is dropped at once
)

// Valid reports whether m is one of the three modes.
func (m UnboundMode) Valid() bool { return m >= UnboundReplace && m <= UnboundRemove }

// Methods a worker calls on its supervisor, for the Lua-side interpreters
// module, on the call channel while a call runs. The supervisor knows which
// interpreter is calling.
const (
	MethodQueueCreate   = "queue.create"      // QueueCreateParams → int64 id
	MethodQueueInfo     = "queue.info"        // IDParams → QueueInfo
	MethodQueuePut      = "queue.put"         // QueuePutParams → nil; a notification for an unbounded queue
	MethodQueueGet      = "queue.get"         // QueueGetParams → QueueGetResult
	MethodInterpCreate  = "interp.create"     // nil → int64 id
	MethodInterpList    = "interp.list"       // nil → []int64, main first
	MethodInterpExists  = "interp.exists"     // IDParams → bool
	MethodInterpRunning = "interp.is_running" // IDParams → bool
	MethodInterpClose   = "interp.close"      // IDParams → nil
	MethodInterpExec    = "interp.exec"       // InterpExecParams → nil
	MethodInterpCall    = "interp.call"       // InterpCallParams → msgpack array of results
	MethodInterpPrepare = "interp.prepare"    // InterpPrepareParams → nil
)

// IDParams names an interpreter or a queue.
type IDParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
}

// QueueCreateParams creates a queue.
type QueueCreateParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	MaxSize  int
	Unbound  UnboundMode
}

// QueueInfo describes a queue.
type QueueInfo struct {
	_msgpack struct{} `msgpack:",as_array"`
	MaxSize  int
	Unbound  UnboundMode
	Size     int
}

// QueuePutParams puts one item. Without Block a full queue fails at once;
// with it the put waits, for at most TimeoutNs when that is positive.
type QueuePutParams struct {
	_msgpack  struct{} `msgpack:",as_array"`
	ID        int64
	Value     msgpack.RawMessage
	Unbound   UnboundMode // 0: the queue's default
	Block     bool
	TimeoutNs int64
}

// Item is the msgpack value to put.
func (p *QueuePutParams) Item() []byte { return rawValue(p.Value) }

// QueueGetParams takes one item, blocking as QueuePutParams does.
type QueueGetParams struct {
	_msgpack  struct{} `msgpack:",as_array"`
	ID        int64
	Block     bool
	TimeoutNs int64
}

// QueueGetResult is one item: Unbound, or a Value.
type QueueGetResult struct {
	_msgpack struct{} `msgpack:",as_array"`
	Unbound  bool
	Value    msgpack.RawMessage
}

// Item is the msgpack value taken; meaningless when Unbound.
func (r *QueueGetResult) Item() []byte { return rawValue(r.Value) }

// rawValue is the value a decoded RawMessage field carried. msgpack decodes
// a nil value into an empty RawMessage, without calling its decoder, so an
// empty one stands for nil.
func rawValue(m msgpack.RawMessage) []byte {
	if len(m) == 0 {
		return []byte{0xc0}
	}
	return m
}

// InterpExecParams runs a chunk in another interpreter.
type InterpExecParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Source   string
}

// InterpCallParams calls a function in another interpreter.
type InterpCallParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Fn       string
	Args     msgpack.RawMessage
}

// InterpPrepareParams binds globals in another interpreter.
type InterpPrepareParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	ID       int64
	Names    msgpack.RawMessage
}
