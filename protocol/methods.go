package protocol

import "github.com/vmihailenco/msgpack/v5"

// Version is the wire version. go-plugin's handshake refuses a worker of
// another version, and the daemon refuses a client of another version.
const Version = 1

// Methods a supervisor calls on a worker.
const (
	MethodExec        = "exec"         // ExecParams → nil
	MethodCall        = "call"         // CallParams → msgpack array of the results
	MethodPrepareMain = "prepare_main" // PrepareMainParams → nil
	MethodStats       = "stats"        // nil → WorkerStats
)

// NotifyOutput is the notification a worker sends with interpreter output
// (the bytes of print and io.write, as msgpack bin). It travels on the same
// session as the reply, so all output of a call precedes its response.
const NotifyOutput = "$out"

// ExecParams runs a chunk in the interpreter's globals.
type ExecParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Source   string
	// TimeoutNs is the call's remaining wall-clock budget; 0 means none.
	TimeoutNs int64
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

// WorkerConfig is what a worker is started with.
type WorkerConfig struct {
	InterpreterID int64 `json:"id"`
	// Stdlib opens the full Lua standard library.
	Stdlib bool `json:"stdlib,omitempty"`
	// MemoryLimit is the soft heap limit in bytes; 0 means none.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// CPULimitNs is the CPU time each call may use; 0 means none.
	CPULimitNs int64 `json:"cpu_limit_ns,omitempty"`
	// OutputLimit is the number of output bytes each call may write; 0
	// means none.
	OutputLimit int64 `json:"output_limit,omitempty"`
}
