package protocol

import "github.com/vmihailenco/msgpack/v5"

// Methods a worker calls on its supervisor, on the call channel while a
// call runs, for what its host gives scripts: host functions and host
// modules. A daemon makes MethodHostCall on the client that gave the
// function, over that client's control session.
const (
	MethodHostCall   = "host.call"   // HostCallParams → msgpack array of the results
	MethodHostModule = "host.module" // NameParams → string: the module's source
)

// CodeHostError is a host function's failure: the error it returned or the
// panic it recovered from. Lua sees it as a HostError.
const CodeHostError Code = "host_error"

// HostCallParams calls the host function Name with Args, a msgpack array
// of fallback-tier values. From a daemon to a client, Ref is the client's
// reference to the function, as its HostFuncRef gave it; from a worker it
// is 0.
type HostCallParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Args     msgpack.RawMessage
	Ref      int64
	// TimeoutNs is what is left of the call's deadline, for a client to
	// give the function's context the same deadline; 0 means none.
	TimeoutNs int64
}

// HostFuncRef is a host function a client gives the interpreter it
// creates: the daemon calls it back by Ref (MethodHostCall) over the
// client's control session, and the function runs in the client.
type HostFuncRef struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
	Ref      int64
}

// NameParams names a host module.
type NameParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Name     string
}

// NotifyHostRelease is the notification a daemon sends a client with
// HostReleaseParams once no interpreter holds the host functions one of
// its creates gave: the client may forget their references.
const NotifyHostRelease = "$host.release"

// HostReleaseParams are the references of host functions no interpreter
// holds any more.
type HostReleaseParams struct {
	_msgpack struct{} `msgpack:",as_array"`
	Refs     []int64
}
