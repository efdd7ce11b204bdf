package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// contract is the core of the API contract, written once against a
// *Runtime and run against both kinds: a local runtime (New) and one
// connected to a daemon (Dial). Every case gets a runtime of its own with
// no interpreters yet.
var contract = []struct {
	name string
	fn   func(t *testing.T, rt *interpreters.Runtime)
}{
	{"CreateListLookup", contractCreateListLookup},
	{"Main", contractMain},
	{"Exec", contractExec},
	{"ExecErrors", contractExecErrors},
	{"Call", contractCall},
	{"CallErrors", contractCallErrors},
	{"PrepareMain", contractPrepareMain},
	{"Close", contractClose},
	{"Running", contractRunning},
	{"Cancellation", contractCancellation},
	{"Deadline", contractDeadline},
	{"Output", contractOutput},
	{"Limits", contractLimits},
	{"WorkerExit", contractWorkerExit},
	{"Queues", contractQueues},
	{"QueuesAcrossInterpreters", contractQueuesAcross},
	{"Describe", contractDescribe},
	{"RestartPolicy", contractRestart},
	{"Pool", contractPool},
	{"CreateFromLua", contractCreateFromLua},
}

// TestContractLocal runs the contract on local runtimes.
func TestContractLocal(t *testing.T) {
	t.Parallel()
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newRuntime(t))
		})
	}
	for _, c := range openContract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, func(opts ...interpreters.Option) *interpreters.Runtime { return newRuntime(t, opts...) })
		})
	}
}

// TestContractRemote runs the same contract on runtimes connected to an
// in-process daemon, one daemon per case so each starts empty.
func TestContractRemote(t *testing.T) {
	t.Parallel()
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, daemon.Config{})
			c.fn(t, d.dial(t))
		})
	}
	for _, c := range openContract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, daemon.Config{})
			c.fn(t, func(opts ...interpreters.Option) *interpreters.Runtime { return d.dial(t, opts...) })
		})
	}
}

// TestContractRemoteTLS runs the same contract over TCP with TLS, whose
// call streams read their sockets blocking under TLS.
func TestContractRemoteTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := selfSigned(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("contract-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	// opener starts a daemon of t's and returns what dials it.
	opener := func(t *testing.T) func(opts ...interpreters.Option) *interpreters.Runtime {
		d := startDaemon(t, daemon.Config{Listen: "127.0.0.1:0", TokenFile: tokenFile, TLS: serverTLS})
		return func(opts ...interpreters.Option) *interpreters.Runtime {
			ctx, cancel := context.WithTimeout(t.Context(), bounded)
			defer cancel()
			opts = append([]interpreters.Option{interpreters.WithToken("contract-token"), interpreters.WithTLS(clientTLS)}, opts...)
			rt, err := interpreters.Dial(ctx, "tcp://"+d.TCPAddr().String(), opts...)
			if err != nil {
				t.Fatalf("Dial over TLS: %v", err)
			}
			t.Cleanup(func() { rt.Close() })
			return rt
		}
	}
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, opener(t)())
		})
	}
	for _, c := range openContract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, opener(t))
		})
	}
}

// TestContractCluster runs the same contract on cluster runtimes: one
// node per case, joined to one NATS server that every case shares, each
// case's cluster under a name of its own. Requests, output, cancellation
// and errors all go by NATS, and IDs come from the cluster's counter.
// Interpreters on several nodes are the cluster tests' business.
func TestContractCluster(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			name := newClusterName()
			startNode(t, node.Config{Name: "n1", Cluster: name, URL: url})
			c.fn(t, dialCluster(t, url, []string{"n1"}, interpreters.WithCluster(name)))
		})
	}
}

func contractCreateListLookup(t *testing.T, rt *interpreters.Runtime) {
	wantList(t, "ListAll of a fresh runtime", listAll(t, rt), rt.GetMain())
	a := create(t, rt)
	b := create(t, rt)
	if a.ID() <= 0 || b.ID() <= a.ID() {
		t.Errorf("IDs %d then %d: want positive and increasing", a.ID(), b.ID())
	}
	wantEqual(t, "Whence", a.Whence(), interpreters.WhenceStdlib)
	wantEqual(t, "String", a.String(), "Interpreter("+strconv.FormatInt(a.ID(), 10)+")")
	wantList(t, "ListAll", listAll(t, rt), rt.GetMain(), a, b)
	got, err := rt.Lookup(a.ID())
	if err != nil || got != a {
		t.Errorf("Lookup(%d) = %v, %v; want the same *Interpreter", a.ID(), got, err)
	}
	_, err = rt.Lookup(-1)
	wantInvalid(t, "Lookup(-1)", err)
	_, err = rt.Lookup(b.ID() + 100)
	wantNotFound(t, "Lookup of an unknown ID", err)
	pa, pb := pid(t, a), pid(t, b)
	if pa == pb || pa == os.Getpid() || !alive(pa) {
		t.Errorf("worker pids %d and %d (host %d): want two distinct live processes", pa, pb, os.Getpid())
	}
	closeAll(t, a, b)
	c := create(t, rt)
	if c.ID() <= b.ID() {
		t.Errorf("ID %d after %d was closed: IDs must never be reused", c.ID(), b.ID())
	}
}

func contractMain(t *testing.T, rt *interpreters.Runtime) {
	m := rt.GetMain()
	if m.ID() != 0 || m.Whence() != interpreters.WhenceRuntime || rt.GetCurrent() != m {
		t.Errorf("main: ID %d, whence %q, GetCurrent %v", m.ID(), m.Whence(), rt.GetCurrent())
	}
	if got, err := rt.Lookup(0); err != nil || got != m {
		t.Errorf("Lookup(0) = %v, %v", got, err)
	}
	if p := pid(t, m); p != os.Getpid() {
		t.Errorf("main's Pid = %d, want the host's %d", p, os.Getpid())
	}
	wantRunning(t, m, true)
	wantUnrecognized(t, "Exec in main", m.Exec("x = 1"))
	_, err := m.Call("tostring", 1)
	wantUnrecognized(t, "Call in main", err)
	wantUnrecognized(t, "PrepareMain of main", m.PrepareMain(map[string]any{"x": 1}))
	wantUnrecognized(t, "Close of main", m.Close())
}

func contractExec(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	mustExec(t, it, "counter = 1")
	mustExec(t, it, "counter = counter + 1")
	wantEqual(t, "a global across Execs", global(t, it, "counter"), int64(2))
	other := create(t, rt)
	wantEqual(t, "the same global in another interpreter", global(t, other, "counter"), nil)
}

func contractExecErrors(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	ef := execFailed(t, "error()", it.Exec(`before = true error("boom", 0)`))
	wantEqual(t, "Type", ef.Type, "LuaError")
	wantEqual(t, "Msg", ef.Msg, "boom")
	wantEqual(t, "Formatted", ef.Formatted, "LuaError: boom")
	wantEqual(t, "InterpreterID", ef.InterpreterID, it.ID())
	if !strings.Contains(ef.Error(), "Uncaught in the interpreter") {
		t.Errorf("Error() = %q", ef.Error())
	}
	wantEqual(t, "what ran before the error", global(t, it, "before"), true)

	ef = execFailed(t, "a table error", it.Exec(`error({type = "ValueError", msg = "spam"})`))
	wantEqual(t, "table error Type", ef.Type, "ValueError")
	wantEqual(t, "table error Msg", ef.Msg, "spam")

	ef = execFailed(t, "a syntax error", it.Exec("x = = 1"))
	wantEqual(t, "syntax error Type", ef.Type, "SyntaxError")

	ef = execFailed(t, "os.exit", it.Exec("os.exit(3)"))
	wantEqual(t, "os.exit Type", ef.Type, "SystemExit")
	wantEqual(t, "os.exit Msg", ef.Msg, "3")
	mustExec(t, it, "after = 1") // still usable
}

func contractCall(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	mustExec(t, it, "function add(a, b) return a + b end Spam = {twice = function(x) return 2 * x end}")
	wantEqual(t, "a global function", mustCall(t, it, "add", 2, 3), int64(5))
	wantEqual(t, "a dotted path", mustCall(t, it, "string.upper", "spam"), "SPAM")
	wantEqual(t, "a table's function", mustCall(t, it, "Spam.twice", 21), int64(42))
	wantEqual(t, "a function literal", mustCall(t, it, "function(a, b) return a .. b end", "x", []byte("y")), "xy")
	wantEqual(t, "no result", mustCall(t, it, "function() end"), nil)
	wantEqual(t, "several results", mustCall(t, it, "function() return 1, 'two', nil end"), interpreters.Tuple{int64(1), "two", nil})
	wantEqual(t, "a table result", mustCall(t, it, "function() return {1, 2, {k = 'v'}} end"), []any{int64(1), int64(2), map[string]any{"k": "v"}})
	wantEqual(t, "an empty table", mustCall(t, it, "function() return {} end"), []any{})
	wantEqual(t, "a float", mustCall(t, it, "function() return 0.5 end"), 0.5)
	wantEqual(t, "an integral float", mustCall(t, it, "function(x) return x end", 3.0), int64(3))
	args := map[string]any{"list": []any{int64(1), "a"}, "n": int64(7)}
	wantEqual(t, "fallback-tier arguments", mustCall(t, it, "function(t) return t end", args), args)
	th := it.CallInThread("function(x) return x * 2 end", 21)
	if v, err := waitThread(t, th); err != nil || v != int64(42) {
		t.Errorf("CallInThread = %v, %v", v, err)
	}
}

func contractCallErrors(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	_, err := it.Call("function() return function() end end")
	wantNotShareable(t, "a function result", err)
	_, err = it.Call("tostring", make(chan int))
	wantNotShareable(t, "a channel argument", err)
	_, err = it.Call("tostring", int64(1)<<60)
	wantNotShareable(t, "an integer beyond 2^53", err)
	_, err = it.Call("function() error({type = 'KeyError', msg = 'k'}) end")
	ef := execFailed(t, "a raising call", err)
	wantEqual(t, "raised Type", ef.Type, "KeyError")
	_, err = it.Call("not_a_function")
	ef = execFailed(t, "a call of nil", err)
	wantEqual(t, "calling nil", ef.Type, "TypeError")
	wantEqual(t, "usable after errors", mustCall(t, it, "function() return 1 end"), int64(1))
}

func contractPrepareMain(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	if err := it.PrepareMain(map[string]any{"name": "world", "n": 3, "raw": []byte("b"), "t": interpreters.Tuple{int64(1), "x"}}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	wantEqual(t, "bound string", global(t, it, "name"), "world")
	wantEqual(t, "bound int", global(t, it, "n"), int64(3))
	wantEqual(t, "bound bytes", global(t, it, "raw"), "b")
	wantEqual(t, "bound tuple", global(t, it, "t"), []any{int64(1), "x"})
	wantInvalid(t, "an empty map", it.PrepareMain(map[string]any{}))
	wantInvalid(t, "a reserved word", it.PrepareMain(map[string]any{"end": 1}))
	err := it.PrepareMain(map[string]any{"ok_value": 1, "bad": map[string]any{}})
	wantNotShareable(t, "a map value", err)
	wantEqual(t, "nothing bound after a refusal", global(t, it, "ok_value"), nil)
}

func contractClose(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	keep := create(t, rt)
	p := pid(t, it)
	if err := it.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitGone(t, p)
	wantEqual(t, "ID after Close", it.ID() > 0, true)
	wantNotFound(t, "Exec after Close", it.Exec("x = 1"))
	_, err := it.Call("tostring", 1)
	wantNotFound(t, "Call after Close", err)
	wantNotFound(t, "PrepareMain after Close", it.PrepareMain(map[string]any{"x": 1}))
	_, err = it.IsRunning()
	wantNotFound(t, "IsRunning after Close", err)
	_, err = it.Pid()
	wantNotFound(t, "Pid after Close", err)
	wantNotFound(t, "a second Close", it.Close())
	_, err = rt.Lookup(it.ID())
	wantNotFound(t, "Lookup after Close", err)
	wantList(t, "ListAll after Close", listAll(t, rt), rt.GetMain(), keep)
}

func contractRunning(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	wantRunning(t, it, false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loop := startExec(ctx, it, "while true do end")
	waitRunning(t, it, loop.done)
	wantAlreadyRunning(t, it, "Exec while running", it.Exec("x = 1"))
	_, err := it.Call("tostring", 1)
	wantAlreadyRunning(t, it, "Call while running", err)
	wantAlreadyRunning(t, it, "Close while running", it.Close())
	cancel()
	if _, err := loop.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled loop: %v, want context.Canceled", err)
	}
	wantRunning(t, it, false)
}

func contractCancellation(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	mustExec(t, it, "state = 'kept'")
	p := pid(t, it)

	ctx, cancel := context.WithCancel(t.Context())
	loop := startExec(ctx, it, "while true do end")
	waitRunning(t, it, loop.done)
	cancel()
	_, err := loop.wait(t) // bounded: only a cancellation that never lands fails here
	wantErr(t, "a cancelled Exec", err, context.Canceled)
	// The VM stopped cleanly: same worker, same state, not running.
	wantRunning(t, it, false)
	wantEqual(t, "state after cancellation", global(t, it, "state"), "kept")
	wantEqual(t, "the worker after cancellation", pid(t, it), p)

	// An already-cancelled context runs nothing.
	done, cancelDone := context.WithCancel(t.Context())
	cancelDone()
	wantErr(t, "Exec under a cancelled context", it.ExecContext(done, "state = 'changed'"), context.Canceled)
	_, err = it.CallContext(done, "function() state = 'changed' end")
	wantErr(t, "Call under a cancelled context", err, context.Canceled)
	wantEqual(t, "state after refused calls", global(t, it, "state"), "kept")

	// CallContext likewise.
	ctx, cancel = context.WithCancel(t.Context())
	call := start(func() (any, error) { return it.CallContext(ctx, "function() while true do end end") })
	waitRunning(t, it, call.done)
	cancel()
	_, err = call.wait(t)
	wantErr(t, "a cancelled Call", err, context.Canceled)
	wantRunning(t, it, false)
}

func contractDeadline(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err := it.ExecContext(ctx, "while true do end")
	wantErr(t, "an Exec past its deadline", err, context.DeadlineExceeded)
	wantRunning(t, it, false)
	wantEqual(t, "usable after a deadline", mustCall(t, it, "function() return 1 end"), int64(1))

	timed := create(t, rt, interpreters.WithCallTimeout(200*time.Millisecond))
	_, err = timed.Call("function() while true do end end")
	wantErr(t, "a Call past WithCallTimeout", err, context.DeadlineExceeded)
}

func contractOutput(t *testing.T, rt *interpreters.Runtime) {
	var out, other syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out))
	it2 := create(t, rt, interpreters.WithStdout(&other))
	mustExec(t, it, `print("a", 1, nil, true) io.write("x", 2)`)
	wantEqual(t, "print and io.write", out.String(), "a\t1\tnil\ttrue\nx2")
	out.Reset()
	mustExec(t, it, `for i = 1, 500 do print(i) end`)
	var want strings.Builder
	for i := 1; i <= 500; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	if out.String() != want.String() {
		t.Errorf("500 lines: got %d bytes, want %d: incomplete or out of order when Exec returned", len(out.String()), want.Len())
	}
	out.Reset()
	if _, err := it.Call("function() print('before') error('x', 0) end"); err == nil {
		t.Fatal("the raising call succeeded")
	}
	wantEqual(t, "output of a failed call", out.String(), "before\n")
	mustExec(t, it2, `print("two")`)
	wantEqual(t, "the other interpreter's writer", other.String(), "two\n")
}

func contractLimits(t *testing.T, rt *interpreters.Runtime) {
	var out syncBuffer
	it := create(t, rt, interpreters.WithStdout(&out), interpreters.WithOutputLimit(10))
	err := it.Exec(`io.write(string.rep("x", 100))`)
	wantErr(t, "past the output limit", err, interpreters.ErrOutputLimit)
	if n := len(out.String()); n > 10 {
		t.Errorf("%d bytes reached the writer past a 10-byte limit", n)
	}
}

func contractWorkerExit(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	other := create(t, rt)
	p := pid(t, it)
	th := it.CallInThread("function() while true do end end")
	waitRunning(t, it, th.Done())
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := waitThread(t, th)
	var wee *interpreters.WorkerExitError
	if !errors.As(err, &wee) {
		t.Fatalf("the call under the kill: %v (%T), want *WorkerExitError", err, err)
	}
	wantEqual(t, "InterpreterID", wee.InterpreterID, it.ID())
	wantEqual(t, "Signal", wee.Signal, "killed")
	wantEqual(t, "ExitCode", wee.ExitCode, -1)
	wantErr(t, "the worker exit", err, interpreters.ErrInterpreter)
	_, err = rt.Lookup(it.ID())
	wantNotFound(t, "Lookup of the dead interpreter", err)
	wantList(t, "ListAll after the crash", listAll(t, rt), rt.GetMain(), other)
}

func contractQueues(t *testing.T, rt *interpreters.Runtime) {
	q, err := rt.CreateQueue(2)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	wantEqual(t, "MaxSize", q.MaxSize(), 2)
	if got, err := rt.LookupQueue(q.ID()); err != nil || got != q {
		t.Errorf("LookupQueue = %v, %v; want the same *Queue", got, err)
	}
	_, err = rt.LookupQueue(q.ID() + 100)
	wantErr(t, "LookupQueue of an unknown ID", err, interpreters.ErrQueueNotFound)
	_, err = q.GetNowait()
	wantErr(t, "GetNowait of an empty queue", err, interpreters.ErrQueueEmpty)
	if err := q.Put([]byte("bytes")); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(map[string]any{"k": []any{1, 2.5}}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "PutNowait on a full queue", q.PutNowait(3), interpreters.ErrQueueFull)
	if full, err := q.Full(); err != nil || !full {
		t.Errorf("Full = %v, %v", full, err)
	}
	if n, err := q.QSize(); err != nil || n != 2 {
		t.Errorf("QSize = %d, %v", n, err)
	}
	v, err := q.Get()
	wantEqual(t, "first item, normalised", v, "bytes")
	wantEqual(t, "first Get error", err, nil)
	v, _ = q.Get()
	wantEqual(t, "second item", v, map[string]any{"k": []any{int64(1), 2.5}})
	// nil and empty maps come out in the normalised form too.
	for _, c := range []struct {
		name      string
		put, want any
	}{
		{"nil", nil, nil},
		{"an empty map", map[string]any{}, []any{}},
		{"a map holding an empty map", map[string]any{"e": map[string]any{}}, map[string]any{"e": []any{}}},
	} {
		if err := q.Put(c.put); err != nil {
			t.Fatalf("Put of %s: %v", c.name, err)
		}
		v, err := q.Get()
		wantEqual(t, "Get of "+c.name, v, c.want)
		wantEqual(t, "its error", err, nil)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = q.GetContext(ctx)
	wantErr(t, "GetContext past its deadline", err, interpreters.ErrQueueEmpty)
	expired, cancelExpired := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancelExpired()
	_, err = q.GetContext(expired)
	wantErr(t, "GetContext with a context already past its deadline", err, interpreters.ErrQueueEmpty)
	if empty, err := q.Empty(); err != nil || !empty {
		t.Errorf("Empty = %v, %v", empty, err)
	}
	wantEqual(t, "IsShareable(queue)", rt.IsShareable(q), true)
}

func contractQueuesAcross(t *testing.T, rt *interpreters.Runtime) {
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	a := create(t, rt)
	b := create(t, rt)
	if err := a.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Fatalf("PrepareMain with a queue: %v", err)
	}
	mustExec(t, a, `q:put("from a") q:put({n = 1}) q:put(nil)`)
	if got := mustCall(t, b, "function(q) return q:get() end", q); got != "from a" {
		t.Errorf("b got %v", got)
	}
	v, err := q.Get()
	wantEqual(t, "host get of an item from Lua", v, map[string]any{"n": int64(1)})
	wantEqual(t, "its error", err, nil)
	v, err = q.Get()
	wantEqual(t, "host get of a nil from Lua", v, nil)
	wantEqual(t, "its error", err, nil)
	if err := q.Put(nil); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "Lua get of the host's nil", mustCall(t, b, "function(q) local v = q:get() return v == nil end", q), true)
	// A queue made in Lua comes out as the runtime's one handle.
	q2, ok := mustCall(t, a, `function() local i = require("interpreters") made = i.create_queue(0) return made end`).(*interpreters.Queue)
	if !ok {
		t.Fatal("a queue returned from Lua is not a *Queue")
	}
	again := mustCall(t, a, "function() return made end")
	if again != q2 {
		t.Errorf("the same queue returned twice gave %p and %p", again, q2)
	}
	if err := q2.Put("host"); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "Lua get of the host's item", mustCall(t, a, "function() return made:get() end"), "host")
	// Unbound items follow their interpreter's close.
	mustCall(t, b, `function(q) q:put("orphan") end`, q)
	closeAll(t, b)
	v, err = q.Get()
	if err != nil || v != interpreters.Unbound {
		t.Errorf("Get of an item whose interpreter closed = %v, %v; want Unbound", v, err)
	}
}

func contractDescribe(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt)
	mustExec(t, it, "x = 1")
	infos, err := rt.Describe(t.Context())
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if len(infos) != 1 {
		t.Fatalf("Describe = %+v, want one interpreter", infos)
	}
	in := infos[0]
	if in.ID != it.ID() || in.Pid != pid(t, it) || in.Running || in.Calls < 1 || in.RSSBytes <= 0 || time.Since(in.Created) > time.Minute {
		t.Errorf("Describe = %+v", in)
	}
	q, err := rt.CreateQueue(3)
	if err != nil {
		t.Fatal(err)
	}
	_ = q.Put(1)
	if err := q.Pin(); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	qs, err := rt.DescribeQueues(t.Context())
	if err != nil || len(qs) != 1 || qs[0].ID != q.ID() || qs[0].Size != 1 || qs[0].MaxSize != 3 || !qs[0].Pinned {
		t.Errorf("DescribeQueues = %+v, %v", qs, err)
	}
	if err := q.Unpin(); err != nil {
		t.Errorf("Unpin: %v", err)
	}
	wantErr(t, "a second Unpin", q.Unpin(), interpreters.ErrInvalidArgument)
}

func contractRestart(t *testing.T, rt *interpreters.Runtime) {
	events := make(chan interpreters.RestartEvent, 4)
	it := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{
		MaxRestarts: 1,
		InitScript:  "inits = (inits or 0) + 1",
		Backoff:     10 * time.Millisecond,
		OnRestart:   func(ev interpreters.RestartEvent) { events <- ev },
	}))
	if err := it.PrepareMain(map[string]any{"bound": "yes"}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, it, "lost = true")
	p := pid(t, it)
	if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if ev.InterpreterID != it.ID() || ev.Attempt != 1 || ev.Err != nil || ev.GaveUp {
			t.Errorf("restart event %+v", ev)
		}
		var wee *interpreters.WorkerExitError
		if !errors.As(ev.Cause, &wee) || wee.Signal != "killed" {
			t.Errorf("restart cause %v, want the kill", ev.Cause)
		}
	case <-time.After(bounded):
		t.Fatal("no restart event")
	}
	deadline := time.Now().Add(bounded)
	for {
		if running, err := it.IsRunning(); err == nil && !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted interpreter never became idle")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if np := pid(t, it); np == p {
		t.Errorf("the same pid %d after a restart", np)
	}
	wantEqual(t, "the init script ran in the new worker", global(t, it, "inits"), int64(1))
	wantEqual(t, "bindings replayed", global(t, it, "bound"), "yes")
	wantEqual(t, "Exec globals lost", global(t, it, "lost"), nil)
}

func contractPool(t *testing.T, rt *interpreters.Runtime) {
	p, err := rt.NewPool(interpreters.PoolOptions{
		MaxWorkers:   2,
		Initializer:  "function(k) factor = k end",
		InitArgs:     []any{3},
		MaxWorkerRSS: 1, // every worker is recycled after one task: the RSS is known
	})
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	got, err := p.Map(ctx, "function(x) return x * factor end", []any{1, 2, 3, 4})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	wantEqual(t, "Map", got, []any{int64(3), int64(6), int64(9), int64(12)})
	ids, err := p.Map(ctx, `function() return require("interpreters").get_current().id end`, []any{1, 2, 3, 4})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	distinct := map[any]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	if len(distinct) < 3 {
		t.Errorf("4 tasks ran in %d workers; recycling by RSS should have given at least 3", len(distinct))
	}
	f, err := p.Submit("function() error('task failed', 0) end")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Result(ctx)
	ef := execFailed(t, "a failing task", err)
	wantEqual(t, "its message", ef.Msg, "task failed")
	if err := p.Shutdown(true, false); err != nil {
		t.Fatal(err)
	}
	_, err = p.Submit("tostring", 1)
	wantErr(t, "Submit after Shutdown", err, interpreters.ErrPoolShutdown)
	// Every worker was recycled (by RSS) or closed at Shutdown.
	wantList(t, "ListAll after Shutdown", listAll(t, rt), rt.GetMain())
}

// contractCreateFromLua: interpreters Lua creates are the runtime's like
// any other, inherit their creator's limits, and are capped by its create
// limit.
func contractCreateFromLua(t *testing.T, rt *interpreters.Runtime) {
	it := create(t, rt, interpreters.WithCreateLimit(2), interpreters.WithOutputLimit(10))
	got := mustCall(t, it, `function()
		local I = require("interpreters")
		local a, b = I.create(), I.create()
		local ok, e = pcall(I.create)
		return a.id, b.id, ok, e.type
	end`)
	tu, ok := got.(interpreters.Tuple)
	if !ok || len(tu) != 4 {
		t.Fatalf("create from Lua returned %#v", got)
	}
	wantEqual(t, "the third create", tu[2:], interpreters.Tuple{false, "InterpreterError"})
	child, err := rt.Lookup(tu[0].(int64))
	if err != nil {
		t.Fatalf("Lookup of the Lua-made interpreter: %v", err)
	}
	wantErr(t, "the child past its creator's output limit", child.Exec(`print(string.rep("x", 100))`), interpreters.ErrOutputLimit)
}
