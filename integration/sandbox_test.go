package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// isoSandboxWait bounds one escape attempt; the sandbox should refuse each at
// once, so this only turns a hang into a failure.
const isoSandboxWait = 30 * time.Second

// isoLuaString quotes s as a Lua string literal (paths and plain text).
func isoLuaString(s string) string { return fmt.Sprintf("%q", s) }

// isoWantRefused checks an attempt the sandbox must refuse cleanly: an
// *ExecutionFailed in the same worker, which stays usable.
func isoWantRefused(t *testing.T, what string, it *interpreters.Interpreter, workerPid int, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: succeeded in a sandboxed interpreter", what)
		return
	}
	var wee *interpreters.WorkerExitError
	if errors.As(err, &wee) {
		t.Errorf("%s: crashed the worker instead of failing cleanly: %v", what, err)
		return
	}
	var ef *interpreters.ExecutionFailed
	if !errors.As(err, &ef) {
		t.Errorf("%s: error %q (%T), want *ExecutionFailed", what, err, err)
		return
	}
	if got, err := it.Pid(); err != nil || got != workerPid {
		t.Errorf("%s: the worker changed from %d to %d (%v)", what, workerPid, got, err)
		return
	}
	if err := it.Exec("sandbox_probe = (sandbox_probe or 0) + 1"); err != nil {
		t.Errorf("%s: the interpreter is not usable afterwards: %v", what, err)
	}
}

// TestSandboxEscapes: in a default interpreter every way out to the files,
// processes, environment, compiler or debug machinery of the worker fails
// with an *ExecutionFailed, and nothing outside the VM changes.
func TestSandboxEscapes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "escaped")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script.lua")
	if err := os.WriteFile(script, []byte("escaped_by_file = true\nreturn 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, v, sc := isoLuaString(marker), isoLuaString(victim), isoLuaString(script)
	touch := isoLuaString("touch " + marker)

	cases := []struct{ name, src string }{
		{"os.execute", "os.execute(" + touch + ")"},
		{"os.remove", "assert(os.remove(" + v + "))"},
		{"os.rename", "assert(os.rename(" + v + ", " + m + "))"},
		{"os.tmpname", "return os.tmpname()"},
		{"os.getenv", "return os.getenv('PATH')"},
		{"os.setenv", "os.setenv('SUBINTERP_ESCAPED', '1')"},
		{"io.open write", "local f = io.open(" + m + ", 'w') f:write('x') f:close()"},
		{"io.open read", "return io.open(" + v + "):read('*a')"},
		{"io.open environ", "return io.open('/proc/self/environ'):read('*a')"},
		{"io.popen", "io.popen(" + touch + ")"},
		{"io.read", "return io.read()"},
		{"io.lines", "for l in io.lines(" + v + ") do end"},
		{"io.output", "io.output(" + m + ")"},
		{"io.stdin", "return io.stdin:read('*l')"},
		{"dofile", "dofile(" + sc + ")"},
		{"loadfile", "assert(loadfile(" + sc + "))()"},
		{"load with a reader", `local done = false
			local chunk = assert(load(function()
				if done then return nil end
				done = true
				return [[os.execute(` + touch + `)]]
			end))
			chunk()`},
		{"loadstring", "assert(loadstring('os.execute(' .. " + isoLuaString(touch) + " .. ')'))()"},
		{"require os", "require('os').execute(" + touch + ")"},
		{"require io", "require('io').open(" + m + ", 'w')"},
		{"require debug", "require('debug').getregistry()"},
		{"require package", "require('package')"},
		{"require a file path", "require(" + isoLuaString(strings.TrimSuffix(script, ".lua")) + ")"},
		{"require a relative path", "require('../x')"},
		{"require dotted escape", "require('..x')"},
		{"package.path", "package.path = " + isoLuaString(dir+"/?.lua") + " require('script')"},
		{"package.loadlib", "package.loadlib('libc.so.6', 'system')"},
		{"debug.getinfo", "return debug.getinfo(1).source"},
		{"debug.getregistry", "return debug.getregistry()"},
		{"debug.getupvalue", "return debug.getupvalue(print, 1)"},
		{"debug.sethook", "debug.sethook(function() end, 'l')"},
		{"string.dump of a Go function", "return string.dump(print)"},
		{"string.dump of a Lua function", "return string.dump(function() return 1 end)"},
		{"setfenv on print", "setfenv(print, {})"},
		{"setfenv on pcall", "setfenv(pcall, {io = {open = function() end}})"},
		{"module", "module('escaped')"},
		{"_printregs", "_printregs()"},
		{"huge string.rep", "return #string.rep('x', 2^40)"},
		{"huge string.rep method", "return #(('x'):rep(1e9))"},
		{"string.rep past the cap", "return #string.rep('abc', 1e8)"},
		{"unpack past the stack", "return select('#', unpack({}, 1, 2e6))"},
		{"string.byte past the stack", "return select('#', string.byte(string.rep('x', 2e6), 1, -1))"},
	}

	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)
	for _, tc := range cases {
		err, _ := isoExec(t, context.Background(), it, tc.src, isoSandboxWait)
		if err != nil {
			t.Logf("%s: %s", tc.name, isoFirstLine(err.Error()))
		}
		isoWantRefused(t, tc.name, it, p, err)
		var wee *interpreters.WorkerExitError
		if errors.As(err, &wee) {
			// Go on in a fresh interpreter.
			it = create(t, rt)
			p = pid(t, it)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a sandboxed script created %s (stat: %v)", marker, err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("a sandboxed script changed %s: %q, %v", victim, b, err)
	}
	if v, ok := os.LookupEnv("SUBINTERP_ESCAPED"); ok {
		t.Errorf("a sandboxed script set the host's environment: SUBINTERP_ESCAPED=%q", v)
	}
	wantEqual(t, "a file's globals leaked in", global(t, it, "escaped_by_file"), nil)
}

func isoFirstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// TestSandboxFenv: getfenv and setfenv on the functions the host provides
// neither escape the sandbox nor change those functions for anyone.
func TestSandboxFenv(t *testing.T) {
	t.Parallel()
	var out1, out2 syncBuffer
	rt := newRuntime(t)
	it := create(t, rt, interpreters.WithStdout(&out1))
	other := create(t, rt, interpreters.WithStdout(&out2))

	// Whatever getfenv hands out is the sandbox itself.
	res := mustCall(t, it, `function()
		local found = {}
		for _, f in ipairs({print, pcall, error, tostring, string.upper, coroutine.wrap}) do
			local ok, env = pcall(getfenv, f)
			if ok and type(env) == "table" then
				if env.io and env.io.open then found[#found + 1] = "io.open" end
				if env.os and (env.os.execute or env.os.getenv) then found[#found + 1] = "os" end
				if env.debug or env.dofile or env.loadfile then found[#found + 1] = "lib" end
				if env.package and (env.package.path or env.package.cpath or env.package.loadlib or env.package.loaders) then found[#found + 1] = "lib" end
			end
		end
		local ok, env = pcall(getfenv, 0)
		if ok and type(env) == "table" and (env.debug or (env.io and env.io.open)) then found[#found + 1] = "level 0" end
		return table.concat(found, ",")
	end`)
	wantEqual(t, "unsafe functions reachable through getfenv", res, "")

	// Changing the environment of host functions, where allowed at all,
	// does not change what they do.
	mustExec(t, it, `
		for _, f in ipairs({print, pcall, error, tostring}) do
			pcall(setfenv, f, {print = false, tostring = false, pcall = false, error = false})
		end
		setfenv(1, setmetatable({}, {__index = _G}))`)
	mustExec(t, it, `print("still prints", tostring(42))`)
	res = mustCall(t, it, "function() return pcall(error, {type = 'ValueError', msg = 'kept'}) end")
	tu, ok := res.(interpreters.Tuple)
	if !ok || len(tu) != 2 || tu[0] != false {
		t.Errorf("pcall(error, ...) after setfenv = %#v, want (false, the error)", res)
	}
	ef := execFailed(t, "error after setfenv", it.Exec("error({type = 'ValueError', msg = 'typed'})"))
	wantEqual(t, "the error's Type after setfenv", ef.Type, "ValueError")
	if !strings.Contains(out1.String(), "still prints\t42") {
		t.Errorf("print after setfenv wrote %q", out1.String())
	}

	mustExec(t, other, `print("other prints", tostring(7)) assert(pcall(error, "x") == false)`)
	if !strings.Contains(out2.String(), "other prints\t7") {
		t.Errorf("the other interpreter's print wrote %q", out2.String())
	}
}

// TestSandboxMetatables: a script that rewires the string metatable, its
// globals' metatable or a shared queue handle's metatable changes its own
// VM at most: the host, the queue and the other interpreters are untouched.
func TestSandboxMetatables(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	it := create(t, rt)
	other := create(t, rt)
	for _, x := range []*interpreters.Interpreter{it, other} {
		if err := x.PrepareMain(map[string]any{"q": q}); err != nil {
			t.Fatalf("PrepareMain: %v", err)
		}
	}
	p := pid(t, it)

	// Each attempt may fail or succeed inside the interpreter; neither
	// may crash its worker.
	for _, src := range []string{
		`getmetatable("").__index = function() return function() return "pwned" end end`,
		`getmetatable("").__metatable = "locked"`,
		`local mt = getmetatable(q) if type(mt) == "table" then
			mt.__index = {put = function() error("hijacked") end, get = function() return "forged" end}
		end`,
		`pcall(setmetatable, q, {__index = {put = function() end}})`,
		`setmetatable(_G, {__index = function(_, k) error("no global " .. tostring(k)) end,
			__newindex = function() error("read-only globals") end})`,
	} {
		err := it.Exec(src)
		var wee *interpreters.WorkerExitError
		if errors.As(err, &wee) {
			t.Fatalf("%q crashed the worker: %v", src, err)
		}
	}
	if got := pid(t, it); got != p {
		t.Fatalf("the tampering interpreter's worker changed from %d to %d", p, got)
	}

	// The other interpreter's strings, globals and queue handle are its own.
	wantEqual(t, "string method in the other interpreter", mustCall(t, other, "function(s) return s:upper() end", "abc"), "ABC")
	wantEqual(t, "string.format in the other interpreter",
		mustCall(t, other, "function() return ('%d-%s'):format(1, 'x') end"), "1-x")
	mustExec(t, other, "q:put('from the other')")
	got, err := q.GetNowait()
	if err != nil {
		t.Fatalf("GetNowait: %v", err)
	}
	wantEqual(t, "the item the other interpreter put", got, "from the other")
	if err := q.Put("from the host"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	wantEqual(t, "the other interpreter's get", mustCall(t, other, "function() return q:get() end"), "from the host")

	// The host's view of the tampering interpreter still works: calls by
	// path, typed errors, and values coming back.
	wantEqual(t, "host Call of string.upper in the tampering interpreter", mustCall(t, it, "string.upper", "abc"), "ABC")
	err = it.Exec("error({type = 'ValueError', msg = 'typed'})")
	var ef *interpreters.ExecutionFailed
	if !errors.As(err, &ef) {
		t.Errorf("an error in the tampering interpreter: %v (%T), want *ExecutionFailed", err, err)
	}
	if got := pid(t, it); got != p {
		t.Errorf("the tampering interpreter's worker changed from %d to %d", p, got)
	}
	wantEqual(t, "queue size seen by the host", isoQSize(t, q), 0)
}

func isoQSize(t *testing.T, q *interpreters.Queue) int {
	t.Helper()
	n, err := q.QSize()
	if err != nil {
		t.Fatalf("QSize: %v", err)
	}
	return n
}

// TestSandboxBombs: scripts that try to exhaust the worker (nested
// coroutines, recursion, huge strings, garbage-collector loops) end in a
// typed error under a timeout and a memory limit; the host and the other
// interpreters carry on.
func TestSandboxBombs(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	sib := isoNewSibling(t, rt)
	for _, tc := range []struct {
		name     string
		src      string
		mayPass  bool // a harmless outcome is allowed
		mayCrash bool // the worker may die of the memory limit
	}{
		{name: "coroutine bomb", src: "local function f() coroutine.wrap(f)() end f()", mayCrash: true},
		{name: "tail-call coroutine bomb", src: "local function f() return coroutine.wrap(f)() end f()", mayCrash: true},
		{name: "coroutine.create bomb", src: "local function f() local co = coroutine.create(f) assert(coroutine.resume(co)) end f()", mayCrash: true},
		{name: "recursion", src: "local function f() return 1 + f() end f()"},
		{name: "pcall recursion", src: "local function f() return 1 + select(2, pcall(f)) end f()", mayPass: true},
		{name: "string doubling", src: "local s = 'x' while true do s = s .. s end", mayCrash: true},
		{name: "string.rep", src: "local t = {} for i = 1, 1e6 do t[i] = string.rep('x', 60 * 1024 * 1024) end"},
		{name: "table growth", src: "local t = {} local i = 0 while true do i = i + 1 t[i] = {} end"},
		{name: "collectgarbage loop", src: "for i = 1, 1e7 do collectgarbage('collect') end", mayPass: true},
		{name: "collectgarbage count loop", src: "local n = 0 for i = 1, 1e6 do n = n + collectgarbage('count') end", mayPass: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := create(t, rt, interpreters.WithCallTimeout(5*time.Second), interpreters.WithMemoryLimit(64<<20))
			p := pid(t, it)
			err, took := isoExec(t, context.Background(), it, tc.src, isoSandboxWait)
			t.Logf("after %v: %v", took, isoFirstLine(fmt.Sprint(err)))
			var ef *interpreters.ExecutionFailed
			var wee *interpreters.WorkerExitError
			switch {
			case err == nil:
				if !tc.mayPass {
					t.Errorf("the bomb ran to completion")
				}
			case errors.As(err, &wee):
				if !tc.mayCrash || !errors.Is(err, interpreters.ErrMemoryLimit) {
					t.Errorf("the worker died: %v", err)
				}
				isoWaitNotFound(t, rt, it)
				return
			case errors.As(err, &ef), errors.Is(err, context.DeadlineExceeded),
				errors.Is(err, interpreters.ErrMemoryLimit), errors.Is(err, interpreters.ErrCPULimit):
			default:
				t.Errorf("error %q (%T) is none of the typed failures", err, err)
			}
			// The call ended one way or another; the interpreter is usable
			// or, if its worker had to be killed, gone.
			switch err := it.Exec("x = 1"); {
			case err == nil:
				if got := pid(t, it); got != p {
					t.Errorf("the worker changed from %d to %d", p, got)
				}
			case errors.Is(err, interpreters.ErrInterpreterNotFound):
				waitGone(t, p)
			default:
				t.Errorf("the call after the bomb: %v", err)
			}
		})
	}
	sib.check(t)
}

// TestSandboxOsExit: os.exit fails the call with SystemExit and leaves the
// worker running.
func TestSandboxOsExit(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)
	for _, tc := range []struct{ src, msg string }{
		{"os.exit()", "0"},
		{"os.exit(3)", "3"},
		{"os.exit(true)", "0"},
		{"os.exit(false)", "1"},
		{"pcall(print, 'x') os.exit(7)", "7"},
	} {
		ef := execFailed(t, tc.src, it.Exec(tc.src))
		wantEqual(t, tc.src+": Type", ef.Type, "SystemExit")
		wantEqual(t, tc.src+": Msg", ef.Msg, tc.msg)
		if got := pid(t, it); got != p {
			t.Fatalf("%s: the worker changed from %d to %d", tc.src, p, got)
		}
	}
	// Caught, it is an ordinary error and the call goes on.
	res := mustCall(t, it, "function() local ok, e = pcall(os.exit, 4) return ok, e.type, e.msg end")
	wantEqual(t, "pcall(os.exit, 4)", res, interpreters.Tuple{false, "SystemExit", "4"})
	if got := pid(t, it); got != p {
		t.Errorf("the worker changed from %d to %d", p, got)
	}
}

// TestSandboxEnvironment: nothing in a sandboxed interpreter reads the
// worker's environment, and the host's environment is not handed to
// workers at all; a WithStdlib interpreter reads the worker's own.
func TestSandboxEnvironment(t *testing.T) {
	const secret = "hunter2-subinterp-host-secret"
	t.Setenv("SUBINTERP_HOST_SECRET", secret)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)

	for _, src := range []string{
		"return os.getenv('SUBINTERP_HOST_SECRET')",
		"return os.getenv('TMPDIR')",
		"return io.open('/proc/self/environ'):read('*a')",
		"return require('os').getenv('TMPDIR')",
	} {
		err, _ := isoExec(t, context.Background(), it, src, isoSandboxWait)
		isoWantRefused(t, src, it, p, err)
	}
	// No value reachable from the globals holds the secret or the path.
	res := mustCall(t, it, `function(secret, tmp)
		local seen, hits = {}, {}
		local function walk(v, path)
			if type(v) == "string" then
				if v:find(secret, 1, true) or v:find(tmp, 1, true) then hits[#hits + 1] = path end
			elseif type(v) == "table" and not seen[v] then
				seen[v] = true
				for k, x in pairs(v) do walk(x, path .. "." .. tostring(k)) end
			end
		end
		walk(_G, "_G")
		return table.concat(hits, ",")
	end`, secret, tmp)
	wantEqual(t, "globals holding the environment", res, "")

	full := create(t, rt, interpreters.WithStdlib())
	wantEqual(t, "os.getenv('TMPDIR') with the full library", mustCall(t, full, "os.getenv", "TMPDIR"), tmp)
	wantEqual(t, "the host's secret in the worker's environment", mustCall(t, full, "os.getenv", "SUBINTERP_HOST_SECRET"), nil)
	environ := mustCall(t, full, "function() local f = assert(io.open('/proc/self/environ')) local s = f:read('*a') f:close() return s end")
	if s, _ := environ.(string); !strings.Contains(s, "TMPDIR="+tmp) || strings.Contains(s, secret) {
		t.Errorf("the worker's /proc/self/environ = %q: want TMPDIR and not the host's secret", environ)
	}
}

// TestSandboxStdlibContrast: the calls the sandbox refuses work in an
// interpreter created WithStdlib.
func TestSandboxStdlibContrast(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "written.txt")
	script := filepath.Join(dir, "script.lua")
	if err := os.WriteFile(script, []byte("from_file = 'loaded'\nreturn 41 + 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t)
	sandboxed := create(t, rt)
	full := create(t, rt, interpreters.WithStdlib())
	sp := pid(t, sandboxed)

	write := "function(path) local f = assert(io.open(path, 'w')) f:write('written by Lua') f:close() return true end"
	_, err := sandboxed.Call(write, path)
	isoWantRefused(t, "io.open in the sandbox", sandboxed, sp, err)
	wantEqual(t, "io.open with the full library", mustCall(t, full, write, path), true)
	if b, err := os.ReadFile(path); err != nil || string(b) != "written by Lua" {
		t.Errorf("the file Lua wrote: %q, %v", b, err)
	}

	_, err = sandboxed.Call("dofile", script)
	isoWantRefused(t, "dofile in the sandbox", sandboxed, sp, err)
	wantEqual(t, "dofile with the full library", mustCall(t, full, "dofile", script), int64(42))
	wantEqual(t, "the file's global", global(t, full, "from_file"), "loaded")

	getenv := "function() return type(os.getenv), os.getenv('SUBINTERP_NO_SUCH_VARIABLE') end"
	_, err = sandboxed.Call(getenv)
	isoWantRefused(t, "os.getenv in the sandbox", sandboxed, sp, err)
	wantEqual(t, "os.getenv with the full library", mustCall(t, full, getenv), interpreters.Tuple{"function", nil})

	remove := "function(path) return assert(os.remove(path)) end"
	_, err = sandboxed.Call(remove, path)
	isoWantRefused(t, "os.remove in the sandbox", sandboxed, sp, err)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the sandbox's refused os.remove removed the file: %v", err)
	}
	wantEqual(t, "os.remove with the full library", mustCall(t, full, remove, path), true)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("os.remove with the full library left the file: %v", err)
	}
}

// TestSandboxManyValues: builtins that turn a large table or string into
// values on the VM's stack either work or fail with an *ExecutionFailed;
// none of them takes the worker down.
func TestSandboxManyValues(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt)
	p := pid(t, it)
	mustExec(t, it, "kept = 'before' big = {} for i = 1, 1.1e6 do big[i] = 'ab' end")
	wantEqual(t, "#table.concat of 1.1M strings", mustCall(t, it, "function() return #table.concat(big) end"), int64(2_200_000))
	wantEqual(t, "#table.concat of 1.1M strings with a separator",
		mustCall(t, it, "function() return #table.concat(big, ',') end"), int64(3_299_999))
	wantEqual(t, "table.concat of a slice", mustCall(t, it, "function() return table.concat({1, 'a', 2.5}, '-', 2, 3) end"), "a-2.5")
	wantEqual(t, "select('#', unpack) of 100k values",
		mustCall(t, it, "function() return select('#', unpack(big, 1, 1e5)) end"), int64(100_000))
	for _, src := range []string{
		"return select('#', unpack(big))",
		"return select('#', string.byte(string.rep('x', 2e6), 1, -1))",
		"return select('#', string.byte(string.rep('x', 2e6)))",
		"return table.concat({1, {}, 3})",
	} {
		err, _ := isoExec(t, context.Background(), it, src, isoSandboxWait)
		isoWantRefused(t, src, it, p, err)
	}
	isoWantUsable(t, "after the large values", it, p)
}
