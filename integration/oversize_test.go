package integration

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

// TestOversizeValues: values, sources, errors and output larger than a
// message can hold (64 MiB) never hang a call or leave an interpreter
// stuck "running": a value fails with ErrNotShareable at once, a request
// too large with ErrInvalidArgument, an error is sent cut short, output in
// pieces; the interpreter stays usable throughout.
func TestOversizeValues(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	rt := newRuntime(t, interpreters.WithStdout(countWriter{&written}))
	it := create(t, rt, interpreters.WithStdlib())
	big := strings.Repeat("y", 70<<20)
	usable := func(what string) {
		t.Helper()
		if got := mustCall(t, it, "function(x) return x + 1 end", 1); got != int64(2) {
			t.Fatalf("after %s: the interpreter answered %v", what, got)
		}
	}

	_, err := it.Call("function(x) return #x end", []byte(big))
	wantErr(t, "a 70 MiB argument", err, interpreters.ErrNotShareable)
	usable("a 70 MiB argument")
	wantErr(t, "a 70 MiB PrepareMain value", it.PrepareMain(map[string]any{"x": big}), interpreters.ErrNotShareable)
	usable("a 70 MiB PrepareMain value")
	wantErr(t, "a 70 MiB source", it.Exec("x = [["+big+"]]"), interpreters.ErrInvalidArgument)
	usable("a 70 MiB source")

	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a 70 MiB queue item from the host", q.Put(big), interpreters.ErrNotShareable)
	_, err = it.Call(`function(q) local s = string.rep("z", 35 * 1024 * 1024) q:put(s .. s) end`, q)
	wantEqual(t, "a 70 MiB queue item from Lua raises", execFailed(t, "the put from Lua", err).Type, "NotShareableError")
	if n, err := q.QSize(); err != nil || n != 0 {
		t.Errorf("the queue holds %d items (%v) after both puts failed", n, err)
	}

	_, err = it.Call(`function() local s = string.rep("x", 35 * 1024 * 1024) return s .. s end`)
	wantErr(t, "a 70 MiB result", err, interpreters.ErrNotShareable)
	usable("a 70 MiB result")
	_, err = it.Call(`function() local s = string.rep("x", 40 * 1024 * 1024) return s, s end`)
	wantErr(t, "two 40 MiB results", err, interpreters.ErrNotShareable)
	usable("two 40 MiB results")

	_, err = it.Call(`function() local t = string.rep("x", 1024 * 1024) for i = 1, 40 do t = {t, t} end return t end`)
	wantErr(t, "a result holding one table twice, forty deep", err, interpreters.ErrNotShareable)
	usable("a result that would expand without end")

	err = it.Exec(`error(string.rep("x", 40 * 1024 * 1024), 0)`)
	var ef *interpreters.ExecutionFailed
	if !errors.As(err, &ef) {
		t.Fatalf("a 40 MiB error message: %v (%T), want *ExecutionFailed", err, err)
	}
	if len(ef.Msg) > 2<<20 || !strings.HasPrefix(ef.Msg, "xxxx") || !strings.Contains(ef.Msg, "more bytes]") {
		t.Errorf("a 40 MiB error message came as %d bytes: %.40q…", len(ef.Msg), ef.Msg)
	}
	usable("a 40 MiB error")

	written.Store(0)
	mustExec(t, it, `local s = string.rep("p", 40 * 1024 * 1024) io.write(s, s)`)
	if got := written.Load(); got != 80<<20 {
		t.Errorf("two 40 MiB writes delivered %d bytes", got)
	}
	usable("80 MiB of output")
}

// TestOversizeOutputInOrder: output sent in pieces keeps its order.
func TestOversizeOutputInOrder(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	rt := newRuntime(t, interpreters.WithStdout(&out))
	it := create(t, rt)
	mustExec(t, it, `io.write("<") io.write(string.rep("a", 3 * 1024 * 1024)) io.write(string.rep("b", 3 * 1024 * 1024)) io.write(">")`)
	want := "<" + strings.Repeat("a", 3<<20) + strings.Repeat("b", 3<<20) + ">"
	if got := out.String(); got != want {
		t.Errorf("6 MiB of output came back as %d bytes, in order: %v", len(got), bytes.Equal([]byte(got), []byte(want)))
	}
}
