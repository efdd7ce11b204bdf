// Package interpreters is PEP 734's concurrent.interpreters for Go, with
// every interpreter a Lua 5.1 VM (gopher-lua) in its own worker process.
//
// The host program plays CPython's main interpreter (ID 0). Create starts a
// new interpreter; Exec runs Lua in it, Call calls a Lua function in it and
// copies the result out, PrepareMain binds globals, and Close ends it. State
// persists between calls: an interpreter's "__main__" is its VM's global
// table. A script that loops forever, exhausts memory, calls os.exit or
// crashes its VM costs only its own interpreter.
//
// Nothing needs setting up: the worker is this same executable, re-executed
// and recognised before main runs. The package-level functions use a default
// Runtime started on first use; New makes a separate local one, and Dial
// connects to a `subinterp serve` daemon with the same API.
//
// Values cross by copy. The strict tier (IsShareable, PrepareMain) is nil,
// bool, integers within ±(2^53−1), floats, strings, []byte, Tuple of strict
// values and *Queue; Call arguments and results also allow slices and
// string-keyed maps. Results come back normalised: integral numbers as
// int64, strings and []byte as string, Lua arrays as []any, Lua tables with
// string keys as map[string]any.
//
// A host decides what its scripts may use beyond pure Lua: WithFunc gives
// them Go functions (require("host")), WithModule Lua modules, and
// WithConfined walls each script in, so that scripts of different owners
// can share one runtime or one daemon. require("json") maps values as the
// codec does.
package interpreters
