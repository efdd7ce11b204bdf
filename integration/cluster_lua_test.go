package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

// TestClusterLuaSeesCluster: Lua code on one node sees the whole cluster
// runtime, as a client does: list_all lists every node's interpreters in
// the order ListAll does, and Interpreter(id) of one on another node
// gives a handle whose methods reach it there, its output going where
// the calling code's goes.
func TestClusterLuaSeesCluster(t *testing.T) {
	t.Parallel()
	name := newClusterName()
	_, url := startJoinedCluster(t, name)
	rt := dialCluster(t, url, []string{"a", "b", "c"}, interpreters.WithCluster(name))

	var out syncBuffer
	onA := create(t, rt, interpreters.WithNode("a"), interpreters.WithStdout(&out))
	onB := create(t, rt, interpreters.WithNode("b"))
	onC := create(t, rt, interpreters.WithNode("c"))
	create(t, rt, interpreters.WithNode("a"))

	var want []string
	for _, it := range listAll(t, rt) {
		want = append(want, fmt.Sprint(it.ID()))
	}
	got := mustCall(t, onA, `function()
		local ids = {}
		for _, it in ipairs(require("interpreters").list_all()) do ids[#ids + 1] = tostring(it.id) end
		return table.concat(ids, " ")
	end`)
	wantEqual(t, "list_all on node a", got, strings.Join(want, " "))

	// A handle on b's interpreter, from a: exec, call, prepare_main,
	// is_running reach it on b.
	wantEqual(t, "a call from a to an interpreter on b", mustCall(t, onA, `function(id)
		local b = require("interpreters").Interpreter(id)
		b:prepare_main({base = 40})
		b:exec("print('printed on b') x = base + 1")
		return b:call("function(y) return x + y end", 1), b:is_running()
	end`, onB.ID()), interpreters.Tuple{int64(42), false})
	wantEqual(t, "x in the interpreter on b, from the client", mustCall(t, onB, "function() return x end"), int64(41))
	if !strings.Contains(out.String(), "printed on b") {
		t.Errorf("the output of b's exec, run from a's call, went elsewhere: a's output is %q", out.String())
	}

	// A queue handed to an interpreter on another node is the same queue
	// there: queues of a cluster live in JetStream.
	wantEqual(t, "a queue put on b, got on a", mustCall(t, onA, `function(id)
		local interpreters = require("interpreters")
		local q = interpreters.create_queue()
		interpreters.Interpreter(id):call("function(q) q:put('via b') end", q)
		return q:get({timeout = 30})
	end`, onB.ID()), "via b")

	// A failure there is the same typed failure here.
	wantEqual(t, "an error raised on b, seen on a", mustCall(t, onA, `function(id)
		local ok, err = pcall(function() require("interpreters").Interpreter(id):exec("error('boom', 0)") end)
		return err.type, err.excinfo.type, err.excinfo.msg
	end`, onB.ID()), interpreters.Tuple{"ExecutionFailed", "LuaError", "boom"})

	// An ID no node has, and one closed from another node, are not found.
	wantEqual(t, "Interpreter of an unknown ID", mustCall(t, onA, `function()
		local ok, err = pcall(require("interpreters").Interpreter, 999999999)
		return err.type
	end`), "InterpreterNotFoundError")
	mustCall(t, onA, `function(id) require("interpreters").Interpreter(id):close() end`, onC.ID())
	_, err := rt.Lookup(onC.ID())
	wantErr(t, "Lookup of the interpreter on c closed from a", err, interpreters.ErrInterpreterNotFound)
}
