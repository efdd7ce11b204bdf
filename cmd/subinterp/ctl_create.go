package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newCreateCommand(g *clientFlags) *cobra.Command {
	var (
		interp       interpFlags
		callTimeout  time.Duration
		node         string
		placementKey string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an interpreter in the daemon and print its ID",
		Long: `Create an interpreter in the daemon: a Lua VM in a new worker process. Its ID
goes to stdout. It lives until "subinterp close ID" or the daemon stops.`,
		Example: `  id=$(subinterp create --memory-limit 67108864)
  subinterp exec "$id" -e 'x = 42'
  subinterp create --socket nats://127.0.0.1:4222 --node n2`,
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
			if node != "" {
				opts = append(opts, interpreters.WithNode(node))
			}
			if placementKey != "" {
				opts = append(opts, interpreters.WithPlacementKey(placementKey))
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
	f.StringVar(&node, "node", "", "on a cluster, the node to create it on (default: the one with the fewest interpreters)")
	f.StringVar(&placementKey, "placement-key", "", "on a cluster, place it by this key: the same key, the same node, while the nodes stay the same")
	g.addControlFlags(f)
	return cmd
}
