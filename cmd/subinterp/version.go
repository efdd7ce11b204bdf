package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/protocol"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "subinterp %s (protocol %d, %s %s/%s)\n",
				Version, protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
