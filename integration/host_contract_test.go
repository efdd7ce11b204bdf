package integration

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// openContract is the part of the contract that needs runtimes made with
// options (host functions and modules are given to New and Dial): each case
// gets open, which makes a runtime of the kind under test, local or
// connected to one daemon of the case's own.
var openContract = []struct {
	name string
	fn   func(t *testing.T, open func(opts ...interpreters.Option) *interpreters.Runtime)
}{
	{"HostFunctions", contractHostFunctions},
	{"HostFunctionErrors", contractHostFunctionErrors},
	{"HostFunctionDeadline", contractHostFunctionDeadline},
	{"HostFunctionWorkerDeath", contractHostFunctionWorkerDeath},
	{"HostFunctionsConcurrent", contractHostFunctionsConcurrent},
	{"HostFunctionsInherited", contractHostFunctionsInherited},
	{"HostFunctionsInPool", contractHostFunctionsInPool},
	{"HostModules", contractHostModules},
	{"JSON", contractJSON},
	{"ExecNamed", contractExecNamed},
	{"Confined", contractConfined},
}

// catchHost calls f with the arguments after it and returns what pcall
// caught: a table error's type, msg and tostring, or "string" and the
// message.
const catchHost = `function(f, ...)
	local ok, e = pcall(f, ...)
	if ok then return "no error" end
	if type(e) == "table" then return e.type, e.msg, tostring(e) end
	return "string", e
end`

func contractHostFunctions(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	var gotArgs []any
	rt := open(
		interpreters.WithFunc("add", func(_ context.Context, args ...any) (any, error) {
			return args[0].(int64) + args[1].(int64), nil
		}),
		interpreters.WithFunc("greet", func(context.Context, ...any) (any, error) { return "runtime's", nil }),
		interpreters.WithFunc("args", func(_ context.Context, args ...any) (any, error) {
			gotArgs = args
			return nil, nil
		}),
		interpreters.WithFunc("several", func(context.Context, ...any) (any, error) {
			return interpreters.Tuple{int64(1), "two", map[string]any{"three": []any{int64(3)}}}, nil
		}),
	)
	it := create(t, rt,
		interpreters.WithFunc("greet", func(context.Context, ...any) (any, error) { return "first", nil }),
		interpreters.WithFunc("greet", func(context.Context, ...any) (any, error) { return "Create's", nil }),
	)
	wantEqual(t, "host.add", mustCall(t, it, `function() return require("host").add(2, 40) end`), int64(42))
	wantEqual(t, "host.greet (Create's later WithFunc over its first and the runtime's)",
		mustCall(t, it, `function() return require("host").greet() end`), "Create's")
	other := create(t, rt)
	wantEqual(t, "host.greet elsewhere", mustCall(t, other, `function() return require("host").greet() end`), "runtime's")
	wantEqual(t, "a nil result is no value",
		mustCall(t, it, `function() return select("#", require("host").args(1.5, "s", {1, 2}, {k = true}, {}, 2^53)) end`), int64(0))
	wantEqual(t, "the arguments, normalised", gotArgs,
		[]any{1.5, "s", []any{int64(1), int64(2)}, map[string]any{"k": true}, []any{}, float64(1 << 53)})
	wantEqual(t, "a Tuple is several values",
		mustCall(t, it, `function() local a, b, c = require("host").several() return a, b, c.three[1] end`),
		interpreters.Tuple{int64(1), "two", int64(3)})
	wantEqual(t, "require(\"host\") is one table, with nothing else in it",
		mustCall(t, it, `function()
			local h = require("host")
			local n = 0
			for _ in pairs(h) do n = n + 1 end
			return h == require("host"), n
		end`), interpreters.Tuple{true, int64(4)})

	// Queues cross both ways: one the script passes arrives as the
	// runtime's own handle, and one the host returns reaches the script.
	// The handles the host drops do not take the queues with them.
	var seen *interpreters.Queue
	var qrt *interpreters.Runtime
	qrt = open(
		interpreters.WithFunc("take", func(_ context.Context, args ...any) (any, error) {
			seen, _ = args[0].(*interpreters.Queue)
			return nil, nil
		}),
		interpreters.WithFunc("fresh", func(context.Context, ...any) (any, error) {
			return qrt.CreateQueue(0)
		}),
	)
	qit := create(t, qrt)
	q := newQueue(t, qrt)
	mustCall(t, qit, `function(q) require("host").take(q) end`, q)
	if seen != q {
		t.Errorf("a queue passed to a host function arrived as %v, want the runtime's handle %v", seen, q)
	}
	mustExec(t, qit, `fresh = require("host").fresh() fresh:put("via the host")`)
	runtime.GC()
	got := mustCall(t, qit, `function() collectgarbage() return fresh:get_nowait() end`)
	wantEqual(t, "an item in a queue a host function returned", got, "via the host")

	bare := create(t, open())
	wantEqual(t, "require(\"host\") without functions",
		mustCall(t, bare, `function() return next(require("host")) == nil end`), true)

	for _, name := range []string{"", "1x", "a-b", "end", "a.b"} {
		_, err := rt.Create(interpreters.WithFunc(name, func(context.Context, ...any) (any, error) { return nil, nil }))
		wantInvalid(t, fmt.Sprintf("WithFunc(%q)", name), err)
	}
	_, err := rt.Create(interpreters.WithFunc("ok", nil))
	wantInvalid(t, "WithFunc with a nil function", err)
}

func contractHostFunctionErrors(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	var called atomic.Int64
	rt := open(
		interpreters.WithFunc("fails", func(context.Context, ...any) (any, error) { return nil, errors.New("no such key: spam") }),
		interpreters.WithFunc("panics", func(context.Context, ...any) (any, error) { panic("the host's bug") }),
		interpreters.WithFunc("unshareable", func(context.Context, ...any) (any, error) { return make(chan int), nil }),
		interpreters.WithFunc("counted", func(context.Context, ...any) (any, error) { called.Add(1); return true, nil }),
	)
	it := create(t, rt)
	got := mustCall(t, it, `function() return (`+catchHost+`)(require("host").fails, "spam") end`)
	wantEqual(t, "a returned error in Lua", got, interpreters.Tuple{"HostError", "no such key: spam", "HostError: no such key: spam"})

	got = mustCall(t, it, `function() return (`+catchHost+`)(require("host").panics) end`)
	tu, _ := got.(interpreters.Tuple)
	if len(tu) != 3 || tu[0] != "HostError" || !strings.Contains(tu[1].(string), "the host's bug") {
		t.Errorf("a panic in Lua: %#v, want a HostError naming the panic value", got)
	}
	got = mustCall(t, it, `function() return (`+catchHost+`)(require("host").unshareable) end`)
	if tu, _ := got.(interpreters.Tuple); len(tu) != 3 || tu[0] != "NotShareableError" {
		t.Errorf("an unshareable result in Lua: %#v, want a NotShareableError", got)
	}
	got = mustCall(t, it, `function() return (`+catchHost+`)(require("host").counted, print) end`)
	if tu, _ := got.(interpreters.Tuple); len(tu) != 3 || tu[0] != "NotShareableError" {
		t.Errorf("an unshareable argument in Lua: %#v, want a NotShareableError", got)
	}
	wantEqual(t, "calls of a function given an unshareable argument", called.Load(), int64(0))

	ef := execFailed(t, "an uncaught HostError", it.Exec(`require("host").fails()`))
	wantEqual(t, "its type", ef.Type, "HostError")
	wantEqual(t, "its message", ef.Msg, "no such key: spam")
	ef = execFailed(t, "an uncaught panic", it.Exec(`require("host").panics()`))
	wantEqual(t, "its type", ef.Type, "HostError")
	// The host carried on, and so did the interpreter.
	wantEqual(t, "after the failures", mustCall(t, it, `function() return require("host").counted() end`), true)
}

func contractHostFunctionDeadline(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	entered, ended := make(chan struct{}, 1), make(chan error, 1)
	rt := open(
		interpreters.WithFunc("block", func(context.Context, ...any) (any, error) {
			<-release // ignores its context: the call must end anyway
			return "late", nil
		}),
		interpreters.WithFunc("wait", func(ctx context.Context, _ ...any) (any, error) {
			entered <- struct{}{}
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		}),
	)
	it := create(t, rt)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	a := start(func() (any, error) { return it.CallContext(ctx, `function() return require("host").block() end`) })
	_, err := a.wait(t)
	wantErr(t, "a host function blocking past the call's deadline", err, context.DeadlineExceeded)
	wantEqual(t, "the interpreter after it", mustCall(t, it, `function() return 1 end`), int64(1))

	ctx, cancel = context.WithCancel(t.Context())
	a = startExec(ctx, it, `require("host").wait()`)
	select {
	case <-entered:
	case <-time.After(bounded):
		t.Fatal("the host function was not called")
	}
	cancel()
	_, err = a.wait(t)
	wantErr(t, "a cancelled call in a host function", err, context.Canceled)
	select {
	case err := <-ended:
		wantErr(t, "the host function's ctx", err, context.Canceled)
	case <-time.After(bounded):
		t.Fatal("the host function's ctx did not end with its call")
	}
	wantEqual(t, "the interpreter after it", mustCall(t, it, `function() return 2 end`), int64(2))

	// The call's own timeout is a deadline of the host function's ctx too.
	timed := create(t, rt, interpreters.WithCallTimeout(300*time.Millisecond))
	err = timed.Exec(`require("host").wait()`)
	select {
	case <-entered:
	case <-time.After(bounded):
		t.Fatal("the host function was not called")
	}
	wantErr(t, "past WithCallTimeout in a host function", err, context.DeadlineExceeded)
	select {
	case err := <-ended:
		wantErr(t, "the host function's ctx", err, context.DeadlineExceeded)
	case <-time.After(bounded):
		t.Fatal("the host function's ctx did not end at the call's timeout")
	}
}

// A worker killed while its call, which has no deadline, waits in a host
// function that ignores its context ends the call at once with the
// worker's exit, and the function's context; the function returns later,
// to no one.
func contractHostFunctionWorkerDeath(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	entered, release, ended := make(chan struct{}, 1), make(chan struct{}), make(chan error, 1)
	returned := make(chan struct{})
	rt := open(interpreters.WithFunc("block", func(ctx context.Context, _ ...any) (any, error) {
		context.AfterFunc(ctx, func() { ended <- ctx.Err() })
		entered <- struct{}{}
		<-release // ignores its context
		close(returned)
		return "late", nil
	}))
	it := create(t, rt)
	p := pid(t, it)
	a := start(func() (any, error) { return it.Call(`function() return require("host").block() end`) })
	select {
	case <-entered:
	case <-time.After(bounded):
		t.Fatal("the host function was not called")
	}
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := a.wait(t)
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("the call under the kill: %v (%T), want *WorkerExitError", err, err)
	}
	select {
	case err := <-ended:
		wantErr(t, "the host function's ctx", err, context.Canceled)
	case <-time.After(bounded):
		t.Fatal("the host function's ctx did not end with its worker")
	}
	close(release)
	select {
	case <-returned:
	case <-time.After(bounded):
		t.Fatal("the host function never returned")
	}
	wantEqual(t, "another interpreter after it", mustCall(t, create(t, rt), `function() return 1 end`), int64(1))
}

func contractHostFunctionsConcurrent(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	const n = 3
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	rt := open(interpreters.WithFunc("meet", func(ctx context.Context, _ ...any) (any, error) {
		// Returns only once every interpreter is inside at the same time:
		// calls the host serialised would never all arrive.
		arrived.Done()
		select {
		case <-all:
			return true, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}))
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	var calls []*async
	for range n {
		it := create(t, rt)
		calls = append(calls, start(func() (any, error) {
			return it.CallContext(ctx, `function() return require("host").meet() end`)
		}))
	}
	for i, a := range calls {
		v, err := a.wait(t)
		if err != nil || v != true {
			t.Errorf("interpreter %d: %v, %v; want all %d inside the host function at once", i, v, err, n)
		}
	}
}

func contractHostFunctionsInherited(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	rt := open(interpreters.WithFunc("rt", func(context.Context, ...any) (any, error) { return "runtime", nil }))
	it := create(t, rt, interpreters.WithFunc("own", func(_ context.Context, args ...any) (any, error) { return args[0], nil }),
		interpreters.WithModule("util", `return {twice = function(x) return 2 * x end}`))
	got := mustCall(t, it, `function()
		local child = require("interpreters").create()
		local a, b, c = child:call([[function()
			local h = require("host")
			return h.rt(), h.own("from the child"), require("util").twice(21)
		end]])
		child:close()
		return a, b, c
	end`)
	wantEqual(t, "a Lua-created child's host functions and modules", got, interpreters.Tuple{"runtime", "from the child", int64(42)})
}

func contractHostFunctionsInPool(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	rt := open(interpreters.WithFunc("scale", func(_ context.Context, args ...any) (any, error) { return args[0].(int64) * 10, nil }),
		interpreters.WithModule("offset", `return 7`))
	p, err := rt.NewPool(interpreters.PoolOptions{MaxWorkers: 2})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	defer p.Shutdown(true, false)
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	got, err := p.Map(ctx, `function(x) return require("host").scale(x) + require("offset") end`, []any{1, 2, 3})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	wantEqual(t, "pool tasks calling the runtime's function and module", got, []any{int64(17), int64(27), int64(37)})
}

func contractHostModules(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	rt := open(
		interpreters.WithModule("util", `loads = (loads or 0) + 1
			local name = ...
			return {name = name, fail = function() error("boom") end}`),
		interpreters.WithModule("acme.broken", "local x = = 1"),
		interpreters.WithModule("sets", `package.loaded.sets = "set itself"`),
	)
	it := create(t, rt, interpreters.WithModule("util2", "return 2"))
	got := mustCall(t, it, `function()
		local u = require("util")
		return u.name, u == require("util"), package.loaded.util == u, loads, require("util2"), require("sets")
	end`)
	wantEqual(t, "require of host modules", got, interpreters.Tuple{"util", true, true, int64(1), int64(2), "set itself"})
	ef := execFailed(t, "an error raised in a module's function", it.Exec(`require("util").fail()`))
	if !strings.HasPrefix(ef.Msg, "util:3: boom") {
		t.Errorf("the error %q should name the module's chunk (util:3: boom)", ef.Msg)
	}
	got = mustCall(t, it, `function()
		local ok, e = pcall(require, "acme.broken")
		return ok, e
	end`)
	tu, _ := got.(interpreters.Tuple)
	if len(tu) != 2 || tu[0] != false || !strings.Contains(fmt.Sprint(tu[1]), "acme.broken") {
		t.Errorf("require of a module that does not compile: %#v, want a caught error naming it", got)
	}
	ef = execFailed(t, "an uncaught require of it", it.Exec(`require("acme.broken")`))
	if !strings.Contains(ef.Msg, "acme.broken") {
		t.Errorf("the error %q should name the module", ef.Msg)
	}
	// A script registers its own module in package.preload; nothing else
	// of package is there.
	got = mustCall(t, it, `function()
		package.preload.mine = function(name) return name .. "!" end
		local keys = {}
		for k in pairs(package) do keys[#keys + 1] = k end
		table.sort(keys)
		return require("mine"), table.concat(keys, ",")
	end`)
	wantEqual(t, "package in the sandbox", got, interpreters.Tuple{"mine!", "loaded,preload"})

	for _, name := range []string{"", "a..b", "1a", "a/b", "json", "host", "interpreters"} {
		_, err := rt.Create(interpreters.WithModule(name, "return 1"))
		wantInvalid(t, fmt.Sprintf("WithModule(%q)", name), err)
	}
}

func contractJSON(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	it := create(t, open(), interpreters.WithMemoryLimit(64<<20))
	got := mustCall(t, it, `function()
		local json = require("json")
		return json.encode({}), json.encode({1, 2.5, "x"}), json.encode({a = {b = true}}), json.encode("\"<&>"),
			json.encode(nil), json.encode(2^53 - 1)
	end`)
	wantEqual(t, "json.encode", got, interpreters.Tuple{`[]`, `[1,2.5,"x"]`, `{"a":{"b":true}}`, `"\"<&>"`, `null`, `9007199254740991`})
	got = mustCall(t, it, `function(s) return require("json").decode(s) end`, `{"list": [1, 2.5, "x", {}], "obj": {"k": null}, "t": true}`)
	wantEqual(t, "json.decode", got, map[string]any{"list": []any{int64(1), 2.5, "x", []any{}}, "obj": []any{}, "t": true})
	got = mustCall(t, it, `function(v) local json = require("json") return json.decode(json.encode(v)) end`,
		map[string]any{"n": int64(-3), "s": "é", "l": []any{1.25, false}})
	wantEqual(t, "a round trip", got, map[string]any{"n": int64(-3), "s": "é", "l": []any{1.25, false}})
	for _, expr := range []string{
		`json.encode(print)`, `json.encode({1, nil, 3})`, `json.encode({[1] = 1, x = 2})`, `json.encode(setmetatable({}, {}))`,
		`json.encode(0/0)`, `json.encode(1/0)`, `json.encode("\255")`,
		`json.decode("{")`, `json.decode("[1] 2")`, `json.decode("12345678901234567890")`,
	} {
		got := mustCall(t, it, `function() local json = require("json") return (`+catchHost+`)(function() return `+expr+` end) end`)
		if tu, _ := got.(interpreters.Tuple); len(tu) < 2 || tu[0] != "ValueError" {
			t.Errorf("%s: %#v, want a ValueError", expr, got)
		}
	}
	// Bounded like any value: past the memory limit, not past the host.
	err := it.Exec(`local json = require("json")
		local t = {}
		for i = 1, 200000 do t[i] = string.rep("x", 1000) end
		local s = json.encode(t)`)
	if err == nil {
		t.Error("encoding 200 MB under a 64 MiB memory limit succeeded")
	}
	wantEqual(t, "the interpreter after it", mustCall(t, it, `function() return require("json").encode({ok = true}) end`), `{"ok":true}`)

	// A text that would pass the memory limit, of a table that is within
	// it (one 8 MiB string nine times), is refused before it is built, with
	// the MemoryError an operation refused for the limit raises.
	const nine = `local s = string.rep("x", 8 * 1024 * 1024)
		local t = {s, s, s, s, s, s, s, s, s}`
	got = mustCall(t, it, `function() local json = require("json") `+nine+`
		return (`+catchHost+`)(json.encode, t) end`)
	if tu, _ := got.(interpreters.Tuple); len(tu) < 2 || tu[0] != "MemoryError" || !strings.Contains(fmt.Sprint(tu[1]), "json.encode") {
		t.Errorf("json.encode of 72 MiB of text under a 64 MiB limit, caught: %#v, want a MemoryError from json.encode", got)
	}
	err = it.Exec(`local json = require("json") ` + nine + ` json.encode(t)`)
	if ef := execFailed(t, "json.encode of 72 MiB of text under a 64 MiB limit", err); ef.Type != "MemoryError" || !errors.Is(err, interpreters.ErrMemoryLimit) {
		t.Errorf("uncaught: %v (type %s), want a MemoryError matching ErrMemoryLimit", err, ef.Type)
	}
	// A text that passes the limit only once escaped is bounded too.
	err = it.Exec(`local s = require("json").encode(string.rep("\1", 12 * 1024 * 1024))`)
	if !errors.Is(err, interpreters.ErrMemoryLimit) {
		t.Errorf("json.encode of 72 MiB of escapes under a 64 MiB limit: %v, want an error matching ErrMemoryLimit", err)
	}
	wantEqual(t, "the interpreter after them", mustCall(t, it, `function() return require("json").encode({ok = true}) end`), `{"ok":true}`)
}

func contractExecNamed(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	rt := open()
	it := create(t, rt)
	err := it.ExecNamed(t.Context(), "fails.lua", "local x = 1\nerror(\"boom\")")
	ef := execFailed(t, "ExecNamed of a failing chunk", err)
	wantEqual(t, "its message", ef.Msg, "fails.lua:2: boom")
	if !strings.Contains(ef.Errdisplay, "fails.lua:2") {
		t.Errorf("its traceback %q should name fails.lua:2", ef.Errdisplay)
	}
	ef = execFailed(t, "ExecNamed of a syntax error", it.ExecNamed(t.Context(), "bad.lua", "x = = 1"))
	if ef.Type != "SyntaxError" || !strings.HasPrefix(ef.Msg, "bad.lua:1") {
		t.Errorf("syntax error: %s %q, want a SyntaxError at bad.lua:1", ef.Type, ef.Msg)
	}
	wantUnrecognized(t, "ExecNamed in main", rt.GetMain().ExecNamed(t.Context(), "x.lua", "x = 1"))
}

// contractConfined: a confined script reaches main, itself, what it
// created and the queues it made or was handed, and nothing else, however
// it tries; so do the interpreters it creates.
func contractConfined(t *testing.T, open func(...interpreters.Option) *interpreters.Runtime) {
	rt := open()
	outside := create(t, rt)
	other := create(t, rt, interpreters.WithConfined())
	hostQ := newQueue(t, rt)  // never handed to the tenant
	otherQ := newQueue(t, rt) // handed to the other tenant only
	mustCall(t, other, `function(q) kept = q end`, otherQ)
	handed, byItem, byArg := newQueue(t, rt), newQueue(t, rt), newQueue(t, rt)
	if err := handed.Put(byItem); err != nil {
		t.Fatal(err)
	}
	tenant := create(t, rt, interpreters.WithConfined())
	if err := tenant.PrepareMain(map[string]any{"hq": handed}); err != nil {
		t.Fatal(err)
	}
	maxID := outside.ID() + 100

	got := mustCall(t, tenant, `function(argq, outside, other, hostq, otherq, maxid)
		local I = require("interpreters")
		local r = {}
		local function try(name, f, ...)
			local ok, e = pcall(f, ...)
			-- an error raised in the child arrives as its ExecutionFailed
			r[name] = ok and "ok" or (type(e) == "table" and (e.excinfo and e.excinfo.type or e.type) or tostring(e))
		end
		local child = I.create()
		local grandchild = child:call([[function() g = require("interpreters").create() return g.id end]])
		local item = hq:get()
		local own = I.create_queue()

		local seen = {}
		for _, h in ipairs(I.list_all()) do seen[#seen + 1] = h.id end
		r.list_all = table.concat(seen, ",")
		local found = {}
		for id = 0, maxid do
			if pcall(I.Interpreter, id) then found[#found + 1] = id end
		end
		r.interpreters = table.concat(found, ",")
		local queues = {}
		for id = 0, maxid do
			if pcall(I.Queue, id) then queues[#queues + 1] = id end
		end
		r.queues = table.concat(queues, ",")

		try("Interpreter(outside)", I.Interpreter, outside)
		try("Interpreter(other tenant)", I.Interpreter, other)
		try("Queue(host's)", I.Queue, hostq)
		try("Queue(other tenant's)", I.Queue, otherq)
		try("child reaching outside", function()
			return child:call([[function(id)
				local ok, e = pcall(require("interpreters").Interpreter, id)
				if not ok then error(e) end
			end]], outside)
		end)
		r["child's list_all"] = child:call([[function()
			local ids = {}
			for _, h in ipairs(require("interpreters").list_all()) do ids[#ids + 1] = h.id end
			return table.concat(ids, ",")
		end]])
		r["child's Queue(host's)"] = child:call([[function(id)
			local ok, e = pcall(require("interpreters").Queue, id)
			return ok and "ok" or e.type
		end]], hostq)
		try("Interpreter(main)", function() assert(I.Interpreter(0) == I.get_main()) end)
		try("grandchild", function() I.Interpreter(grandchild):exec("x = 1") end)
		try("queue by PrepareMain", function() hq:put_nowait(1) assert(hq:get_nowait() == 1) end)
		try("queue in an item", function() I.Queue(item.id):put_nowait(2) end)
		try("queue by a Call argument", function() I.Queue(argq.id):put_nowait(3) end)
		try("own queue to the child", function() child:call("function(q) q:put(4) end", own) assert(own:get_nowait() == 4) end)
		r.ids = table.concat({child.id, grandchild, hq.id, item.id, argq.id, own.id}, ",")
		return r
	end`, byArg, outside.ID(), other.ID(), hostQ.ID(), otherQ.ID(), maxID)
	m, ok := got.(map[string]any)
	if !ok {
		t.Fatalf("the confined script returned %#v", got)
	}
	var ids []int64
	for _, s := range strings.Split(m["ids"].(string), ",") {
		var n int64
		fmt.Sscan(s, &n)
		ids = append(ids, n)
	}
	child, grandchild, own := ids[0], ids[1], ids[5]
	sorted := func(ns ...int64) string {
		slices.Sort(ns)
		parts := make([]string, len(ns))
		for i, n := range ns {
			parts[i] = fmt.Sprint(n)
		}
		return strings.Join(parts, ",")
	}
	want := map[string]any{
		"list_all":                  sorted(0, tenant.ID(), child, grandchild),
		"interpreters":              sorted(0, tenant.ID(), child, grandchild),
		"queues":                    sorted(handed.ID(), byItem.ID(), byArg.ID(), own),
		"Interpreter(outside)":      "InterpreterNotFoundError",
		"Interpreter(other tenant)": "InterpreterNotFoundError",
		"Queue(host's)":             "QueueNotFoundError",
		"Queue(other tenant's)":     "QueueNotFoundError",
		"child reaching outside":    "InterpreterNotFoundError",
		"child's list_all":          sorted(0, child, grandchild),
		"child's Queue(host's)":     "QueueNotFoundError",
		"Interpreter(main)":         "ok",
		"grandchild":                "ok",
		"queue by PrepareMain":      "ok",
		"queue in an item":          "ok",
		"queue by a Call argument":  "ok",
		"own queue to the child":    "ok",
		"ids":                       m["ids"],
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s: %v, want %v", k, m[k], v)
		}
	}
	// The walls are the script's, not the host's: the host sees everything.
	if len(listAll(t, rt)) < 6 {
		t.Errorf("the host lists %d interpreters, want all of them", len(listAll(t, rt)))
	}
	// An unconfined script sees the whole runtime, as PEP 734 says.
	wantEqual(t, "an unconfined script's Interpreter(outside)",
		mustCall(t, outside, `function(id) return require("interpreters").Interpreter(id).id end`, tenant.ID()), tenant.ID())
}
