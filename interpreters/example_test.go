package interpreters_test

import (
	"errors"
	"fmt"

	"github.com/subinterp/subinterp/interpreters"
)

// Create starts an interpreter in its own worker process.
func ExampleCreate() {
	interp, err := interpreters.Create()
	if err != nil {
		panic(err)
	}
	defer interp.Close()
	running, _ := interp.IsRunning()
	fmt.Println(interp.Whence(), running)
	// Output: _interpreters module false
}

// Exec runs Lua in the interpreter; its globals persist between calls and
// its output reaches the writer before Exec returns.
func ExampleInterpreter_Exec() {
	rt := interpreters.New()
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		panic(err)
	}
	if err := interp.Exec(`greeting = "hello"`); err != nil {
		panic(err)
	}
	if err := interp.Exec(`print(greeting, "from Lua")`); err != nil {
		panic(err)
	}
	err = interp.Exec(`error({type = "ValueError", msg = "spam"})`)
	var failed *interpreters.ExecutionFailed
	if errors.As(err, &failed) {
		fmt.Println(failed.Formatted)
	}
	// Output:
	// hello	from Lua
	// ValueError: spam
}

// Call calls a Lua function and copies its result out, normalised: Lua
// arrays come back as []any, integral numbers as int64, several results as
// a Tuple.
func ExampleInterpreter_Call() {
	rt := interpreters.New()
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		panic(err)
	}
	upper, _ := interp.Call("string.upper", "shout")
	sum, _ := interp.Call("function(a, b) return a + b end", 2, 3)
	pair, _ := interp.Call("function(t) return #t, t[2] end", []any{"x", "y", "z"})
	fmt.Println(upper, sum, pair)
	// Output: SHOUT 5 [3 y]
}

// PrepareMain binds shareable values as globals before running code.
func ExampleInterpreter_PrepareMain() {
	rt := interpreters.New()
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		panic(err)
	}
	err = interp.PrepareMain(map[string]any{"name": "world", "times": 2})
	if err != nil {
		panic(err)
	}
	if err := interp.Exec(`for i = 1, times do print("hello, " .. name) end`); err != nil {
		panic(err)
	}
	// Output:
	// hello, world
	// hello, world
}
