package worker

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/subinterp/subinterp/protocol"
)

// watchInterval is how often a running call's memory and CPU time are
// checked. Reading runtime/metrics does not stop the world, unlike
// runtime.ReadMemStats, so the check costs the running Lua nothing.
const watchInterval = 5 * time.Millisecond

// hardMemoryFactor is how far past the soft limit a call's heap may grow,
// after a MemoryError was raised, before the call is ended uncatchably.
const hardMemoryFactor = 1.5

// hardMemorySlack is what the kernel's hard limit allows above the soft
// limit, for the Go runtime's own overhead and the soft limit's reaction
// time; the soft limit is the one scripts are meant to meet.
const hardMemorySlack = 1 << 30

// applyProcessLimits sets what the worker process as a whole may use: the
// Go runtime collects harder near the memory limit, and the kernel ends the
// process past the hard one.
func applyProcessLimits(cfg protocol.WorkerConfig) {
	if cfg.MemoryLimit > 0 || cfg.CPULimitNs > 0 || cfg.CPUTotalNs > 0 {
		// The watch must sample while Lua runs, every watchInterval: on
		// the one P a worker starts with, it would wait for the runtime to
		// preempt the VM, and a heap can outgrow its hard limit meanwhile.
		runtime.GOMAXPROCS(2)
	}
	if cfg.CPUTotalNs > 0 {
		// The soft limit is the watch's; the kernel's comes a second later,
		// for a worker stuck where the watch cannot stop it.
		secs := uint64((time.Duration(cfg.CPUTotalNs) + 2*time.Second - 1) / time.Second)
		_ = unix.Setrlimit(unix.RLIMIT_CPU, &unix.Rlimit{Cur: secs, Max: secs + 1})
	}
	if cfg.MemoryLimit <= 0 {
		return
	}
	// The Go runtime's own limit sits above the point where calls are ended:
	// set at the soft limit, it would make the collector thrash long before
	// the watch sees the heap cross it.
	debug.SetMemoryLimit(int64(float64(cfg.MemoryLimit)*hardMemoryFactor) + hardMemorySlack/4)
	// RLIMIT_AS counts address space, and a Go process reserves far more
	// than it touches: the limit is what is reserved now plus the budget.
	if vm := virtualBytes(); vm > 0 {
		limit := uint64(vm) + uint64(cfg.MemoryLimit)*2 + hardMemorySlack
		_ = unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: limit, Max: limit})
	}
}

// virtualBytes is the process's current VmSize.
func virtualBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// memoryError is the soft memory limit's failure: a script error of type
// MemoryError that is also a memory-limit error.
func memoryError(limit int64) *protocol.Error {
	msg := fmt.Sprintf("memory limit of %d bytes exceeded", limit)
	return &protocol.Error{Code: protocol.CodeExecutionFailed, Type: "MemoryError", Msg: msg,
		Formatted: "MemoryError: " + msg, Cause: protocol.CodeMemoryLimit}
}

// overMemoryLimit is the memory limit's error for a call that ends with
// the interpreter holding more than its limit, nil otherwise. The watch
// samples the heap only every watchInterval, so a call shorter than that
// is checked as it ends; its result counts, being held at that point.
func (w *worker) overMemoryLimit() error {
	mem := w.cfg.MemoryLimit
	if mem <= 0 || heapBytes() <= uint64(mem) {
		return nil
	}
	// Only what a collection cannot free is over the limit.
	runtime.GC()
	if heapBytes() <= uint64(mem) {
		return nil
	}
	return memoryError(mem)
}

func cpuError(limit time.Duration) *protocol.Error {
	return protocol.Errorf(protocol.CodeCPULimit, "CPU time limit of %s per call exceeded", limit)
}

// watch enforces the per-call limits while a call runs. Past the memory
// limit the VM raises a MemoryError that pcall can catch; the watch re-arms
// once the heap is back under the limit, and a heap that keeps growing to
// hardMemoryFactor times the limit ends the call for good, as the CPU limit
// does at once: by ending the call's context with the limit's error as its
// cause. The returned func stops the watch.
func (w *worker) watch(cancel context.CancelCauseFunc) func() {
	mem, cpu, total := w.cfg.MemoryLimit, time.Duration(w.cfg.CPULimitNs), time.Duration(w.cfg.CPUTotalNs)
	if mem <= 0 && cpu <= 0 && total <= 0 {
		return func() {}
	}
	cpuStart := cpuSeconds()
	if total > 0 && time.Duration(cpuStart*1e9) > total {
		// Spent already: the call fails before it runs anything.
		cancel(protocol.Errorf(protocol.CodeCPULimit, "CPU time limit of %s for the interpreter exceeded", total))
		return func() {}
	}
	hard := uint64(float64(mem) * hardMemoryFactor)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		tripped := false
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if mem > 0 {
				heap := heapBytes()
				if heap > hard || (heap > uint64(mem) && !tripped) {
					// The heap counts garbage not yet swept: only memory
					// still in use after a collection is over a limit.
					runtime.GC()
					heap = heapBytes()
				}
				switch {
				case heap > hard:
					cancel(memoryError(mem))
					return
				case heap > uint64(mem) && !tripped:
					w.vm.SoftInterrupt(memoryError(mem))
					tripped = true
				case heap <= uint64(mem):
					tripped = false
				}
			}
			now := cpuSeconds()
			if cpu > 0 && time.Duration((now-cpuStart)*1e9) > cpu {
				cancel(cpuError(cpu))
				return
			}
			if total > 0 && time.Duration(now*1e9) > total {
				cancel(protocol.Errorf(protocol.CodeCPULimit, "CPU time limit of %s for the interpreter exceeded", total))
				return
			}
		}
	}()
	// Stopping waits for the watch to finish its check: a MemoryError it
	// decided on during a collection must not land in the next call.
	return func() {
		close(done)
		<-exited
	}
}
