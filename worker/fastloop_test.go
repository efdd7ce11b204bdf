package worker

import (
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/subinterp/subinterp/protocol"
)

// installProbe defines probe(), which records whether the state calling it
// (the VM's own or a coroutine's) runs interruptLoop; the channel closes
// at the first probe.
func installProbe(vm *VM) (*[]bool, <-chan struct{}) {
	var seen []bool
	probed := make(chan struct{})
	L := vm.L()
	L.SetGlobal("probe", L.NewFunction(func(L *lua.LState) int {
		if len(seen) == 0 {
			close(probed)
		}
		seen = append(seen, usesFastLoop(L))
		return 0
	}))
	return &seen, probed
}

func TestFastLoopInterrupt(t *testing.T) {
	// Built with subinterp_nointernals, calls run gopher-lua's own loop,
	// which must stop them as well.
	if fastLoop == luaInternalsOff {
		t.Fatalf("fast loop %v under subinterp_nointernals %v: the gopher-lua layout checks failed, or the tag was ignored", fastLoop, luaInternalsOff)
	}
	for _, src := range []string{
		`probe() while true do end`,
		`probe() local x = 0 for i = 1, math.huge do x = x + i end`,
		`local function f(d) if d == 0 then probe() end if d < 60 then f(d + 1) f(d + 1) end end f(0)`,
		`local function f(n) if n == 0 then probe() end return f(n + 1) end f(0)`,
		`local co = coroutine.create(function() probe() while true do end end) coroutine.resume(co)`,
		`local co = coroutine.wrap(function() coroutine.yield() probe() while true do end end) co() co()`,
	} {
		t.Run(src, func(t *testing.T) {
			vm, _ := newVM(t, VMConfig{})
			seen, probed := installProbe(vm)
			// A cancel before probe() ran would stop the chunk with
			// nothing seen: gopher-lua's own loop checks at once.
			err, took := execCancelledAfter(t, vm, src, probed)
			checkEmpty(t, vm)
			if pe := failed(t, err); pe.Code != protocol.CodeCanceled {
				t.Fatalf("got %+v, want canceled", pe)
			}
			if len(*seen) != 1 || (*seen)[0] != fastLoop {
				t.Fatalf("probe saw the fast loop: %v, want [%v]", *seen, fastLoop)
			}
			t.Logf("interrupt took %v", took)
			if usesFastLoop(vm.L()) {
				t.Error("the state keeps the interrupt loop after the call")
			}
		})
	}
}

// A soft interrupt that pcall catches swaps in a fresh interrupt context,
// which must keep the fast loop; a coroutine made outside any call gets it
// when a call resumes it.
func TestFastLoopAfterContextChanges(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	seen, _ := installProbe(vm)
	L := vm.L()
	L.SetGlobal("soft", L.NewFunction(func(*lua.LState) int {
		vm.SoftInterrupt(&protocol.Error{Code: protocol.CodeMemoryLimit, Type: "MemoryError", Msg: "memory limit exceeded"})
		return 0
	}))
	wantResults(t, eval(t, vm, `(function()
		local ok, e = pcall(function() soft() while true do end end)
		probe()
		return ok, e.type end)()`), false, "MemoryError")

	if err := L.DoString(`outside = coroutine.create(function() while true do probe() coroutine.yield() end end)`); err != nil {
		t.Fatal(err)
	}
	L.SetTop(0)
	mustExec(t, vm, `coroutine.resume(outside) coroutine.resume(outside)`)
	want := []bool{fastLoop, fastLoop, fastLoop}
	if len(*seen) != len(want) || (*seen)[0] != fastLoop || (*seen)[1] != fastLoop || (*seen)[2] != fastLoop {
		t.Fatalf("probe saw the fast loop: %v, want %v", *seen, want)
	}
}
