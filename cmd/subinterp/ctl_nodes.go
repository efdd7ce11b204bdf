package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

// nodeEntry is one node in `nodes --json`.
type nodeEntry struct {
	Name         string    `json:"name"`
	Interpreters int       `json:"interpreters"`
	Pid          int       `json:"pid"`
	Started      time.Time `json:"started"`
}

func newNodesCommand(g *clientFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the live nodes of a cluster",
		Long: `List the live nodes of the cluster at --socket nats://HOST:PORT, by name:
the interpreters each has alive (its load, as of its last heartbeat), its
daemon's pid and uptime. --json prints a JSON array.`,
		Example: `  subinterp nodes --socket nats://127.0.0.1:4222`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !isCluster(g.socket) {
				return &exitError{code: exitUsage, err: fmt.Errorf("%s is a single daemon, which has no nodes: give a cluster's nats://HOST:PORT with --socket", g.socket)}
			}
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			infos, err := rt.Nodes(ctx)
			if err != nil {
				return err
			}
			entries := make([]nodeEntry, len(infos))
			for i, in := range infos {
				entries[i] = nodeEntry{Name: in.Name, Interpreters: in.Interpreters, Pid: in.Pid, Started: in.Started}
			}
			now := time.Now()
			return printListing(cmd.OutOrStdout(), asJSON, entries, "NODE\tINTERPRETERS\tPID\tUPTIME", func(e nodeEntry) string {
				return fmt.Sprintf("%s\t%d\t%d\t%s", e.Name, e.Interpreters, e.Pid, now.Sub(e.Started).Round(time.Second))
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	g.addControlFlags(cmd.Flags())
	return cmd
}

// isCluster reports whether addr names a cluster rather than one daemon.
func isCluster(addr string) bool {
	network, _, err := interpreters.ParseAddr(addr)
	return err == nil && network == "nats"
}
