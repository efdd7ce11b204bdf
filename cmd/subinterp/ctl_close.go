package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newCloseCommand(g *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "close ID...",
		Short: "Close interpreters of the daemon",
		Long: `Close each named interpreter and reap its worker process. An interpreter
that is running a call cannot be closed (exit code 1); an unknown ID exits
with code 3. Every ID is tried, failures are reported in the order of the
arguments, and the first one sets the exit code.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			code := exitOK
			for _, arg := range args {
				it, err := lookup(rt, arg)
				if err == nil {
					err = it.Close()
				}
				if err == nil {
					continue
				}
				cmd.PrintErrln("subinterp:", err)
				if code == exitOK {
					code = exitCode(err)
				}
			}
			if code != exitOK {
				return &exitError{code: code} // each failure is already reported
			}
			return nil
		},
	}
	g.addControlFlags(cmd.Flags())
	return cmd
}

// exitCode is the code Main would exit with for err alone.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return codeFor(err)
}
