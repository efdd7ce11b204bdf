package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

func newExecCommand(g *clientFlags) *cobra.Command {
	var (
		code string
		file string
	)
	cmd := &cobra.Command{
		Use:   "exec ID [-e CODE | -f FILE]",
		Short: "Run Lua code in one of the daemon's interpreters",
		Long: `Run a Lua chunk in the interpreter's globals: the code of -e (even empty), the
file of -f ("-" for stdin), or stdin when neither is given; stdin is read
once the interpreter is known to exist, and a file's first line is skipped
if it starts with "#", as by run. Its output streams to stdout. An
uncaught Lua error prints the formatted error and traceback on stderr and
exits 1; the interpreter keeps its state either way. Ctrl-C interrupts the
chunk (exit code 130).`,
		Example: `  subinterp exec 1 -e 'counter = (counter or 0) + 1 print(counter)'
  subinterp exec 1 -f script.lua
  echo 'print("hi")' | subinterp exec 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// A flag given empty is code too: only an absent one means stdin.
			codeGiven, fileGiven := cmd.Flags().Changed("code"), cmd.Flags().Changed("file")
			if codeGiven && fileGiven {
				return &exitError{code: exitUsage, err: errors.New("give -e or -f, not both")}
			}
			fromStdin := !codeGiven && (!fileGiven || file == "-")
			src := code
			if fileGiven && !fromStdin {
				// A missing file is a usage error even with no daemon.
				var err error
				if src, err = readScript(context.Background(), file, nil); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			ctx, rt, done, err := g.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			it, err := lookup(rt, args[0])
			if err != nil {
				return err
			}
			if fromStdin {
				if src, err = readScript(ctx, "-", cmd.InOrStdin()); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			name := "" // -e: "<string>"
			switch {
			case fromStdin:
				name = chunkName("-")
			case fileGiven:
				name = chunkName(file)
			}
			return scriptError(cmd, it.ExecNamed(ctx, name, src))
		},
	}
	f := cmd.Flags()
	f.StringVarP(&code, "code", "e", "", "the Lua code to run")
	f.StringVarP(&file, "file", "f", "", `a Lua file to run ("-": stdin)`)
	g.addControlFlags(f)
	return cmd
}
