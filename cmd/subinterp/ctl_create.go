package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newCreateCommand(g *clientFlags) *cobra.Command {
	var (
		interp      interpFlags
		callTimeout time.Duration
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
			opts := interp.options()
			if callTimeout > 0 {
				opts = append(opts, interpreters.WithCallTimeout(callTimeout))
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
	interp.register(f)
	f.DurationVar(&callTimeout, "call-timeout", 0, "wall-clock limit per call (0: none)")
	g.addControlFlags(f)
	return cmd
}
