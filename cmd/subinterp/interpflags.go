package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/subinterp/subinterp/interpreters"
)

// interpFlags are the flags that configure a new interpreter, shared by the
// commands that create one.
type interpFlags struct {
	stdlib      bool
	confined    bool
	memoryLimit int64
	cpuLimit    time.Duration
	outputLimit int64
}

func (f *interpFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.stdlib, "stdlib", false, "open the full Lua standard library (trusted scripts only)")
	fs.BoolVar(&f.confined, "confined", false, "wall its scripts in: through require(\"interpreters\") they reach only main, their own interpreter, those they create, and the queues they make or are handed")
	fs.Int64Var(&f.memoryLimit, "memory-limit", 0, "memory limit in bytes (0: none)")
	fs.DurationVar(&f.cpuLimit, "cpu-limit", 0, "CPU time limit per call (0: none)")
	fs.Int64Var(&f.outputLimit, "output-limit", 0, "output limit per call in bytes (0: none)")
}

// options turns the flags into Create options.
func (f *interpFlags) options() []interpreters.Option {
	var opts []interpreters.Option
	if f.stdlib {
		opts = append(opts, interpreters.WithStdlib())
	}
	if f.confined {
		opts = append(opts, interpreters.WithConfined())
	}
	if f.memoryLimit > 0 {
		opts = append(opts, interpreters.WithMemoryLimit(f.memoryLimit))
	}
	if f.cpuLimit > 0 {
		opts = append(opts, interpreters.WithCPULimit(f.cpuLimit))
	}
	if f.outputLimit > 0 {
		opts = append(opts, interpreters.WithOutputLimit(f.outputLimit))
	}
	return opts
}
