package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newCreateCommand(g *clientFlags) *cobra.Command {
	var (
		stdlib      bool
		memoryLimit int64
		cpuLimit    time.Duration
		callTimeout time.Duration
		outputLimit int64
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an interpreter in the daemon and print its ID",
		Long: `Create an interpreter in the daemon: a Lua VM in a new worker process. Its ID
goes to stdout. It lives until "subinterp close ID" or the daemon stops.`,
		Example: `  id=$(subinterp create --memory-limit 67108864)
  subinterp exec "$id" -e 'x = 42'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			var opts []interpreters.Option
			if stdlib {
				opts = append(opts, interpreters.WithStdlib())
			}
			if memoryLimit > 0 {
				opts = append(opts, interpreters.WithMemoryLimit(memoryLimit))
			}
			if cpuLimit > 0 {
				opts = append(opts, interpreters.WithCPULimit(cpuLimit))
			}
			if callTimeout > 0 {
				opts = append(opts, interpreters.WithCallTimeout(callTimeout))
			}
			if outputLimit > 0 {
				opts = append(opts, interpreters.WithOutputLimit(outputLimit))
			}
			it, err := rt.CreateContext(ctx, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), it.ID())
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&stdlib, "stdlib", false, "open the full Lua standard library (trusted scripts only)")
	f.Int64Var(&memoryLimit, "memory-limit", 0, "memory limit in bytes (0: none)")
	f.DurationVar(&cpuLimit, "cpu-limit", 0, "CPU time limit per call (0: none)")
	f.DurationVar(&callTimeout, "call-timeout", 0, "wall-clock limit per call (0: none)")
	f.Int64Var(&outputLimit, "output-limit", 0, "output limit per call in bytes (0: none)")
	return cmd
}
