// Command hostkv hosts untrusted Lua scripts: each tenant's script runs in
// an interpreter of its own, confined and under limits, and reaches its
// host only through the functions the host gives it, a key-value store of
// the tenant's and a clock, and a Lua module of helpers.
//
//	go run ./examples/hostkv                 # the built-in tenants
//	go run ./examples/hostkv a.lua b.lua     # one tenant per file
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// store is one tenant's key-value store. Host functions of different
// interpreters run concurrently, so it locks.
type store struct {
	mu   sync.Mutex
	data map[string]any
}

func (s *store) get(_ context.Context, args ...any) (any, error) {
	key, err := keyArg(args)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key], nil // nil: the script gets no value
}

func (s *store) set(_ context.Context, args ...any) (any, error) {
	key, err := keyArg(args)
	if err != nil {
		return nil, err
	}
	if len(args) < 2 {
		return nil, errors.New("set(key, value): no value")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.data) >= 1000 && s.data[key] == nil {
		return nil, errors.New("the store is full")
	}
	s.data[key] = args[1] // a copy already: values cross by copy
	return nil, nil
}

func (s *store) keys(context.Context, ...any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]any, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].(string) < keys[j].(string) })
	return keys, nil
}

func keyArg(args []any) (string, error) {
	if len(args) == 0 {
		return "", errors.New("no key")
	}
	key, ok := args[0].(string)
	if !ok || key == "" {
		return "", fmt.Errorf("the key must be a non-empty string, got %v", args[0])
	}
	return key, nil
}

// now is the clock scripts get: os.time has only seconds.
func now(context.Context, ...any) (any, error) {
	return float64(time.Now().UnixMicro()) / 1e6, nil
}

// helpers is a module every tenant may require.
const helpers = `
local M = {}
function M.incr(key)
	local kv = require("host")
	local n = (kv.get(key) or 0) + 1
	kv.set(key, n)
	return n
end
return M`

// tenant is a script and its name.
type tenant struct{ name, src string }

var demo = []tenant{
	{"counter.lua", `
		local h = require("helpers")
		for _ = 1, 3 do h.incr("visits") end
		local host = require("host")
		host.set("profile", {name = "ada", langs = {"lua", "go"}})
		print("visits", host.get("visits"), "keys", table.concat(host.keys(), ","))
		print("json", require("json").encode(host.get("profile")))`},
	{"nosy.lua", `
		local I = require("interpreters")
		local ok, e = pcall(I.Interpreter, 1) -- counter.lua's, alive
		print("reach another tenant:", ok and "yes" or e.type)
		print("interpreters I see:", #I.list_all())`},
	{"spin.lua", `
		local t0 = require("host").now()
		while true do end`},
	{"errors.lua", `
		local ok, e = pcall(require("host").set, "")
		print("bad key:", e.type, e.msg)
		require("host").get(print)`},
}

// run runs each tenant's script in a confined interpreter of one runtime,
// with a store of its own, and reports how each ended.
func run(w io.Writer, tenants []tenant) error {
	rt := interpreters.New(
		interpreters.WithFunc("now", now),
		interpreters.WithModule("helpers", helpers),
		interpreters.WithConfined(),
		interpreters.WithMemoryLimit(64<<20),
		interpreters.WithCPULimit(200*time.Millisecond),
		// The wall-clock backstop, well past the CPU limit: a spinning
		// script on a busy machine gets its CPU slowly, and it is the CPU
		// limit that should stop it.
		interpreters.WithCallTimeout(30*time.Second),
		interpreters.WithOutputLimit(64<<10),
		interpreters.WithStdout(w),
	)
	defer rt.Close()
	for _, t := range tenants {
		kv := &store{data: make(map[string]any)}
		interp, err := rt.Create(
			interpreters.WithFunc("get", kv.get),
			interpreters.WithFunc("set", kv.set),
			interpreters.WithFunc("keys", kv.keys),
		)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "== %s\n", t.name)
		err = interp.ExecNamed(context.Background(), t.name, t.src)
		var failed *interpreters.ExecutionFailed
		switch {
		case err == nil:
			fmt.Fprintln(w, "-- ok")
		case errors.As(err, &failed):
			fmt.Fprintf(w, "-- failed: %s\n", failed.Formatted)
		default:
			fmt.Fprintf(w, "-- stopped: %v\n", err)
		}
	}
	return nil // rt.Close ends every tenant's interpreter
}

func main() {
	tenants := demo
	if len(os.Args) > 1 {
		tenants = nil
		for _, path := range os.Args[1:] {
			src, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			tenants = append(tenants, tenant{filepath.Base(path), string(src)})
		}
	}
	if err := run(os.Stdout, tenants); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
