package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/chzyer/readline"
)

// errPromptInterrupted is what a lineReader returns for Ctrl-C at the
// prompt.
var errPromptInterrupted = errors.New("interrupted at the prompt")

// lineReader is the REPL's input, a line at a time, each with its newline.
// At the end of input it returns io.EOF.
type lineReader interface {
	readLine(prompt string) (string, error)
	close()
}

// newLineReader reads a terminal with line editing and a history file,
// and anything else (a pipe, a file) plainly, with no prompt.
func newLineReader(in io.Reader, interactive bool, out, errOut io.Writer) lineReader {
	f, ok := in.(*os.File)
	if interactive && ok {
		rl, err := readline.NewEx(&readline.Config{
			HistoryFile:       historyFile(),
			HistorySearchFold: true,
			InterruptPrompt:   "^C",
			EOFPrompt:         "",
			Stdin:             f,
			Stdout:            out,
			Stderr:            errOut,
		})
		if err == nil {
			return &terminalReader{rl: rl}
		}
	}
	return &plainReader{br: bufio.NewReader(in)}
}

// terminalReader reads with github.com/chzyer/readline: line editing,
// history (kept across sessions) and reverse search.
type terminalReader struct{ rl *readline.Instance }

func (t *terminalReader) readLine(prompt string) (string, error) {
	t.rl.SetPrompt(prompt)
	line, err := t.rl.Readline()
	switch {
	case errors.Is(err, readline.ErrInterrupt):
		return "", errPromptInterrupted
	case err != nil:
		return "", err
	}
	return line + "\n", nil
}

func (t *terminalReader) close() { _ = t.rl.Close() }

// plainReader reads lines as they come, for piped input.
type plainReader struct{ br *bufio.Reader }

func (p *plainReader) readLine(string) (string, error) {
	line, err := p.br.ReadString('\n')
	if line != "" {
		return line, nil // a last line without a newline; EOF comes next
	}
	return "", err
}

func (p *plainReader) close() {}

// historyFile is where the REPL keeps its history:
// $XDG_STATE_HOME/subinterp/repl_history, ~/.local/state without
// XDG_STATE_HOME; "" (no history kept) when that directory cannot be made.
func historyFile() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".local", "state")
	}
	dir = filepath.Join(dir, "subinterp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	return filepath.Join(dir, "repl_history")
}
