package baseline

import (
	"errors"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// InProcessLua calls a compiled Lua identity function in the calling
// process. It measures the interpreter's own call cost with no process
// boundary, so a cross-process result can be split into interpreter and
// transport.
//
// Like the gopher-lua state it wraps, it is not safe for concurrent use.
type InProcessLua struct {
	l  *lua.LState
	fn *lua.LFunction
}

// NewInProcessLua creates a state with the standard libraries and compiles
// function(x) return x end once, so Call measures calling, not compiling.
func NewInProcessLua() *InProcessLua {
	l := lua.NewState()
	if err := l.DoString("return function(x) return x end"); err != nil {
		// A constant chunk that fails to compile is a bug here.
		panic(err)
	}
	fn := l.Get(-1).(*lua.LFunction)
	l.Pop(1)
	return &InProcessLua{l: l, fn: fn}
}

var errLuaClosed = errors.New("baseline: in-process Lua state closed")

// Call calls the function with v and returns its result. Lua 5.1 numbers
// are float64, so v round-trips exactly only while |v| <= 2^53.
func (l *InProcessLua) Call(v int64) (int64, error) {
	if l.l == nil {
		return 0, errLuaClosed
	}
	if err := l.l.CallByParam(lua.P{Fn: l.fn, NRet: 1, Protect: true}, lua.LNumber(v)); err != nil {
		return 0, err
	}
	ret := l.l.Get(-1)
	l.l.Pop(1)
	n, ok := ret.(lua.LNumber)
	if !ok {
		return 0, fmt.Errorf("baseline: Lua returned %s, want a number", ret.Type())
	}
	return int64(n), nil
}

// Close releases the state; Call fails afterwards.
func (l *InProcessLua) Close() {
	if l.l != nil {
		l.l.Close()
		l.l = nil
	}
}
