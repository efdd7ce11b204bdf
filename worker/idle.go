package worker

import (
	"runtime"
	"runtime/debug"
)

// idleCollectAbove is the heap a call may leave behind before the worker
// collects it as it goes idle; below it the garbage waits for the next
// call, whose collections find it anyway.
const idleCollectAbove = 16 << 20

// collector turns the garbage collector off while the worker waits for a
// call, and back on for each call. The runtime otherwise forces a
// collection every two minutes in every idle worker, which for thousands
// of workers is most of what they cost the CPU idle; and a collection of
// a tiny idle heap only adds the collector's own memory to it. A worker
// allocates nothing while it waits, and the memory limit, when there is
// one, still holds.
type collector struct {
	percent int // the GOGC calls run under
}

// idle turns collection off; a call that left a large heap behind is
// collected first, so an idle worker holds no more than it must.
func (c *collector) idle() {
	if heapBytes() > idleCollectAbove {
		runtime.GC()
	}
	if p := debug.SetGCPercent(-1); p >= 0 {
		c.percent = p
	}
}

// busy turns collection back on for a call.
func (c *collector) busy() { debug.SetGCPercent(c.percent) }
