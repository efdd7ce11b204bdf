package interpreters_test

import (
	"context"
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

// WithFunc gives scripts a Go function to call through require("host").
// It runs in the host; its arguments and results cross by copy, and its
// error is a HostError the script can catch.
func ExampleWithFunc() {
	prices := map[string]float64{"apple": 0.5, "pear": 0.75}
	rt := interpreters.New(interpreters.WithFunc("price", func(_ context.Context, args ...any) (any, error) {
		name, _ := args[0].(string)
		p, ok := prices[name]
		if !ok {
			return nil, fmt.Errorf("no price for %q", name)
		}
		return p, nil
	}))
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		panic(err)
	}
	err = interp.Exec(`
		local host = require("host")
		print(host.price("apple") * 4)
		local ok, e = pcall(host.price, "plum")
		print(ok, e.type, e.msg)`)
	if err != nil {
		panic(err)
	}
	// Output:
	// 2
	// false	HostError	no price for "plum"
}

// WithModule gives scripts a Lua module of the host's: require runs it once
// per interpreter, in the interpreter's sandbox, and keeps what it returns.
func ExampleWithModule() {
	rt := interpreters.New(interpreters.WithModule("text", `
		local M = {}
		function M.title(s) return (s:gsub("^%l", string.upper)) end
		return M`))
	defer rt.Close()
	interp, err := rt.Create()
	if err != nil {
		panic(err)
	}
	v, err := interp.Call(`function(s) return require("text").title(s) end`, "hello")
	if err != nil {
		panic(err)
	}
	fmt.Println(v)
	// Output: Hello
}
