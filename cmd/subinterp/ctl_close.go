package main

import (
	"github.com/spf13/cobra"
)

func newCloseCommand(g *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "close ID...",
		Short: "Close interpreters of the daemon",
		Long: `Close each named interpreter and reap its worker process. An interpreter
that is running a call cannot be closed (exit code 1); an unknown ID exits
with code 3. Every ID is tried; the first failure sets the exit code.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			var first error
			for _, arg := range args {
				it, err := lookup(rt, arg)
				if err == nil {
					err = it.Close()
				}
				if err != nil && first == nil {
					first = err
				} else if err != nil {
					cmd.PrintErrln("subinterp:", err)
				}
			}
			return first
		},
	}
}
