package worker

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// liveHeap is the heap still in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	return heapBytes()
}

// TestCoroutineBombReleased: a chain of wrapped coroutines stopped by an
// interrupt leaves nothing reachable once the call is over: not through
// the VM's current thread, not through stale call frames.
func TestCoroutineBombReleased(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	before := liveHeap()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := vm.Exec(ctx, "local function f() coroutine.wrap(f)() end f()")
	if err == nil {
		t.Fatal("the coroutine bomb ran to completion")
	}
	L := vm.L()
	if L.G.CurrentThread != L {
		t.Errorf("after the bomb the current thread is a coroutine, not the main state")
	}
	if after := liveHeap(); after > before+8<<20 {
		t.Errorf("the stopped bomb keeps %d KB live (before it: %d KB)", after>>10, before>>10)
	}
	if err := vm.Exec(context.Background(), "x = coroutine.running() == nil"); err != nil {
		t.Fatal(err)
	}
	if got := L.GetGlobal("x"); got.String() != "true" {
		t.Errorf("coroutine.running() in the main state after the bomb: not nil")
	}
}

// TestReturnedCallReleased: what only a returned call's functions reached
// is garbage once the call is over, deep recursion or not.
func TestReturnedCallReleased(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	before := liveHeap()
	err := vm.Exec(context.Background(), `do
		local big = string.rep("x", 32e6)
		local function g(n) if n == 0 then return #big end return g(n - 1) + 0 end
		assert(g(50) == 32e6)
	end`)
	if err != nil {
		t.Fatal(err)
	}
	if after := liveHeap(); after > before+8<<20 {
		t.Errorf("a returned call keeps %d KB live (before it: %d KB)", after>>10, before>>10)
	}
}
