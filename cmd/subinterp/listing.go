package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// printListing writes entries as an indented JSON array with asJSON, and
// otherwise as a table: header, then row's line for each entry, their
// fields separated by tabs.
func printListing[E any](out io.Writer, asJSON bool, entries []E, header string, row func(E) string) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, e := range entries {
		fmt.Fprintln(tw, row(e))
	}
	return tw.Flush()
}
