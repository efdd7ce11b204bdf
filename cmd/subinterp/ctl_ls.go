package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

// lsEntry is one interpreter in `ls --json`.
type lsEntry struct {
	ID         int64     `json:"id"`
	Whence     string    `json:"whence"`
	Pid        int       `json:"pid"`
	State      string    `json:"state"`
	Created    time.Time `json:"created"`
	UptimeSecs float64   `json:"uptime_seconds"`
	Calls      int64     `json:"calls"`
	RSSBytes   int64     `json:"rss_bytes"`
	CPUSecs    float64   `json:"cpu_seconds"`
	Node       string    `json:"node,omitempty"`
}

func newLsCommand(g *clientFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the daemon's interpreters",
		Long: `List the daemon's live interpreters, oldest first: ID, whence, worker pid,
state (running while a call is in progress, else idle), uptime, calls made,
and the worker's resident memory and CPU time; on a cluster (--socket
nats://HOST:PORT), every node's, with the node first. --json prints a JSON
array.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			infos, err := rt.Describe(ctx)
			if err != nil {
				return err
			}
			now := time.Now()
			entries := make([]lsEntry, len(infos))
			for i, in := range infos {
				state := "idle"
				if in.Running {
					state = "running"
				}
				entries[i] = lsEntry{
					ID: in.ID, Whence: interpreters.WhenceStdlib, Pid: in.Pid, State: state, Created: in.Created,
					UptimeSecs: now.Sub(in.Created).Seconds(), Calls: in.Calls, RSSBytes: in.RSSBytes, CPUSecs: in.CPUTime.Seconds(),
					Node: in.Node,
				}
			}
			// A cluster's listing says where each interpreter lives.
			cluster := isCluster(g.socket)
			header := "ID\tWHENCE\tPID\tSTATE\tUPTIME\tCALLS\tRSS\tCPU"
			if cluster {
				header = "NODE\t" + header
			}
			return printListing(cmd.OutOrStdout(), asJSON, entries, header, func(e lsEntry) string {
				line := fmt.Sprintf("%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s", e.ID, e.Whence, e.Pid, e.State,
					now.Sub(e.Created).Round(time.Second), e.Calls, humanBytes(e.RSSBytes), time.Duration(e.CPUSecs*float64(time.Second)).Round(time.Millisecond))
				if cluster {
					line = e.Node + "\t" + line
				}
				return line
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	g.addControlFlags(cmd.Flags())
	return cmd
}

// humanBytes renders a size in binary units; "-" when unknown.
func humanBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
