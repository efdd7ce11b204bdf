package main

import (
	"github.com/spf13/cobra"
)

func newCallCommand(g *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "call ID FN [ARG...]",
		Short: "Call a Lua function in one of the daemon's interpreters and print the result as JSON",
		Long: `Call FN in the interpreter and print its result as one line of JSON. FN is a
Lua expression that evaluates to a function: a global name, a dotted path
("string.upper") or a function literal. Each ARG is a JSON value; integral
numbers become Lua integers, objects become tables, {"$queue": ID} passes
that queue. Several results print as a JSON array; none as null. Queues in
results print as {"$queue": ID}. An uncaught Lua error prints the formatted
error on stderr and exits 1.`,
		Example: `  subinterp call 1 'function(a, b) return a + b end' 2 3
  subinterp call 1 string.upper '"spam"'
  subinterp call 1 'function(t) return #t.items end' '{"items": [1, 2, 3]}'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			it, err := lookup(rt, args[0])
			if err != nil {
				return err
			}
			callArgs := make([]any, 0, len(args)-2)
			for _, a := range args[2:] {
				v, err := parseJSONValue(rt, a)
				if err != nil {
					return err
				}
				callArgs = append(callArgs, v)
			}
			res, err := it.CallContext(ctx, args[1], callArgs...)
			if err != nil {
				return scriptError(cmd, err)
			}
			return writeJSON(cmd.OutOrStdout(), res)
		},
	}
	g.addControlFlags(cmd.Flags())
	return cmd
}
