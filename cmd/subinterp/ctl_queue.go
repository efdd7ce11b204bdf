package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/subinterp/subinterp/interpreters"
)

func newQueueCommand(g *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "Create, fill, drain and list the daemon's queues",
		Long: `Work with the daemon's cross-interpreter queues. Items are JSON values on the
command line and in the output. A queue made by "queue create" is pinned:
the daemon keeps it, empty or not, until "queue rm". Lua in an interpreter
reaches it with require("interpreters").Queue(ID).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newQueueCreateCommand(g), newQueuePutCommand(g), newQueueGetCommand(g),
		newQueueLsCommand(g), newQueueRmCommand(g))
	g.addControlFlags(cmd.PersistentFlags())
	return cmd
}

func parseUnbound(s string) (interpreters.UnboundMode, error) {
	switch s {
	case "replace":
		return interpreters.UnboundReplace, nil
	case "error":
		return interpreters.UnboundError, nil
	case "remove":
		return interpreters.UnboundRemove, nil
	}
	return 0, &exitError{code: exitUsage, err: fmt.Errorf("--unbound %q: want replace, error or remove", s)}
}

func unboundName(m interpreters.UnboundMode) string {
	switch m {
	case interpreters.UnboundReplace:
		return "replace"
	case interpreters.UnboundError:
		return "error"
	case interpreters.UnboundRemove:
		return "remove"
	}
	return fmt.Sprint(int(m))
}

func lookupQueue(rt *interpreters.Runtime, arg string) (*interpreters.Queue, error) {
	id, err := parseID(arg, "queue")
	if err != nil {
		return nil, err
	}
	return rt.LookupQueue(id)
}

func newQueueCreateCommand(g *clientFlags) *cobra.Command {
	var (
		maxsize int
		unbound string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a pinned queue and print its ID",
		Long: `Create a queue in the daemon and print its ID. The daemon keeps it until
"subinterp queue rm ID". --maxsize bounds it (0 or less: unbounded);
--unbound says what becomes of an item whose interpreter is closed:
replace (Get returns UNBOUND), error, or remove.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, err := parseUnbound(unbound)
			if err != nil {
				return err
			}
			_, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			q, err := rt.CreateQueue(maxsize, interpreters.WithUnboundItems(mode))
			if err != nil {
				return err
			}
			if err := q.Pin(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), q.ID())
			return nil
		},
	}
	cmd.Flags().IntVar(&maxsize, "maxsize", 0, "maximum number of items (0 or less: unbounded)")
	cmd.Flags().StringVar(&unbound, "unbound", "replace", "fate of an item whose interpreter is closed: replace, error or remove")
	return cmd
}

func newQueuePutCommand(g *clientFlags) *cobra.Command {
	var (
		nowait  bool
		unbound string
	)
	cmd := &cobra.Command{
		Use:   "put ID JSON",
		Short: "Put a JSON value into a queue",
		Long: `Put one item, given as a JSON value, into the queue. It waits while the queue
is full (bounded by --timeout); with --nowait a full queue fails at once
(exit code 1). An item that is not a JSON value a Lua value can hold exactly
(an integer beyond ±(2^53-1), a number out of range) is a usage error (2);
a {"$queue": ID} of a queue that does not exist exits 3.`,
		Example: `  subinterp queue put 1 '{"job": 7, "args": [1, 2]}'`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []interpreters.PutOption
			if unbound != "" {
				mode, err := parseUnbound(unbound)
				if err != nil {
					return err
				}
				opts = append(opts, interpreters.WithUnboundItems(mode))
			}
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			q, err := lookupQueue(rt, args[0])
			if err != nil {
				return err
			}
			v, err := parseJSONValue(rt, args[1])
			if err != nil {
				return err
			}
			if nowait {
				return q.PutNowait(v, opts...)
			}
			return q.PutContext(ctx, v, opts...)
		},
	}
	cmd.Flags().BoolVar(&nowait, "nowait", false, "fail at once if the queue is full")
	cmd.Flags().StringVar(&unbound, "unbound", "", "this item's fate if its interpreter is closed (default: the queue's)")
	return cmd
}

func newQueueGetCommand(g *clientFlags) *cobra.Command {
	var nowait bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Take the oldest item of a queue and print it as JSON",
		Long: `Take the oldest item of the queue and print it as one line of JSON. It waits
while the queue is empty (bounded by --timeout); with --nowait an empty
queue fails at once (exit code 1).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			q, err := lookupQueue(rt, args[0])
			if err != nil {
				return err
			}
			var v any
			if nowait {
				v, err = q.GetNowait()
			} else {
				v, err = q.GetContext(ctx)
			}
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), v)
		},
	}
	cmd.Flags().BoolVar(&nowait, "nowait", false, "fail at once if the queue is empty")
	return cmd
}

// queueEntry is one queue in `queue ls --json`.
type queueEntry struct {
	ID      int64  `json:"id"`
	MaxSize int    `json:"maxsize"`
	Size    int    `json:"size"`
	Unbound string `json:"unbound"`
	Pinned  bool   `json:"pinned"`
}

func newQueueLsCommand(g *clientFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the daemon's queues",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			qs, err := rt.DescribeQueues(ctx)
			if err != nil {
				return err
			}
			entries := make([]queueEntry, len(qs))
			for i, q := range qs {
				entries[i] = queueEntry{ID: q.ID, MaxSize: q.MaxSize, Size: q.Size, Unbound: unboundName(q.UnboundItems), Pinned: q.Pinned}
			}
			return printListing(cmd.OutOrStdout(), asJSON, entries, "ID\tMAXSIZE\tSIZE\tUNBOUND\tPINNED", func(e queueEntry) string {
				return fmt.Sprintf("%d\t%d\t%d\t%s\t%v", e.ID, e.MaxSize, e.Size, e.Unbound, e.Pinned)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	return cmd
}

func newQueueRmCommand(g *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Unpin a queue made by queue create",
		Long: `Drop the daemon's pin on the queue. It is destroyed, with its items, unless an
interpreter, a client or another queue's item still reaches it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			q, err := lookupQueue(rt, args[0])
			if err != nil {
				return err
			}
			return q.Unpin()
		},
	}
}
