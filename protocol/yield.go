package protocol

import (
	"runtime"
	"time"
)

// Yielder keeps a goroutine that waits only in blocking system calls (a
// call channel's or a call stream's read(2)) from looking to the Go
// runtime like one that has run without a break. Such a goroutine never
// passes through the scheduler, so the runtime's monitor, seeing its P on
// the same goroutine for 10 ms, takes the P from the system call it is in
// and preempts it, and then polls every 20 µs for a millisecond: tens of
// thread wake-ups for nothing, every 10 ms, on each end of a call. A
// yield now and then is a pass through the scheduler that costs no
// context switch. A Yielder is for one goroutine at a time.
type Yielder struct{ last time.Time }

// yieldEvery is how often a Yielder yields: well inside the monitor's
// 10 ms.
const yieldEvery = 2 * time.Millisecond

// Yield yields to the scheduler if it has not for yieldEvery.
func (y *Yielder) Yield() {
	if now := time.Now(); now.Sub(y.last) >= yieldEvery {
		y.last = now
		runtime.Gosched()
	}
}
