package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeScript writes src to a file of the test's and returns its path.
func writeScript(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunExitStatus: os.exit's status is run's exit code, with no
// traceback.
func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		src  string
		code int
	}{
		{`print("out") os.exit(3)`, 3},
		{`os.exit()`, 0},
		{`os.exit(0)`, 0},
		{`os.exit(true)`, 0},
		{`os.exit(false)`, 1},
		{`os.exit(42) print("never")`, 42},
	} {
		r := cli(t, "", "run", writeScript(t, c.src)).want(t, "run "+c.src, c.code)
		if strings.Contains(r.stderr, "SystemExit") || strings.Contains(r.stderr, "Uncaught") {
			t.Errorf("run %s printed the SystemExit: %q", c.src, r.stderr)
		}
		if strings.Contains(r.stdout, "never") {
			t.Errorf("run %s went on after os.exit", c.src)
		}
	}
	if r := cli(t, `os.exit(5)`, "run", "-").want(t, "run - with os.exit(5)", 5); r.stderr != "" {
		t.Errorf("run - printed %q", r.stderr)
	}
}

// TestRunShebangAndBOM: a first line starting with # and a UTF-8 byte
// order mark are skipped, line numbers kept.
func TestRunShebangAndBOM(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"shebang":     "#!/usr/bin/env subinterp run\nprint('ran') error('on line 2')\n",
		"BOM":         "\xEF\xBB\xBF\nprint('ran') error('on line 2')\n",
		"BOM+shebang": "\xEF\xBB\xBF#!/usr/bin/env subinterp run\nprint('ran') error('on line 2')\n",
	} {
		r := cli(t, "", "run", writeScript(t, src)).want(t, "run with a "+name, exitFailure)
		if r.stdout != "ran\n" || !strings.Contains(r.stderr, ":2: on line 2") {
			t.Errorf("run with a %s: stdout %q, stderr %q", name, r.stdout, r.stderr)
		}
	}
	cli(t, "", "run", writeScript(t, "#!/usr/bin/env subinterp run")).want(t, "run of a shebang alone", 0)
}

// TestRunTimeout: run's --timeout is the global one and says so.
func TestRunTimeout(t *testing.T) {
	t.Parallel()
	r := cli(t, "", "run", writeScript(t, "while true do end"), "--timeout", "200ms").want(t, "run --timeout", exitFailure)
	if !strings.Contains(r.stderr, "timed out after 200ms") {
		t.Errorf("run --timeout said %q", r.stderr)
	}
}

// TestScriptNames: run FILE and exec -f FILE name the chunk after the file
// as given, as lua does; stdin is "stdin".
func TestScriptNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fails.lua"), []byte("local x = 1\nerror(\"boom\")\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", "run", filepath.Join(dir, "fails.lua")).want(t, "run of a failing file", exitFailure)
	if want := filepath.Join(dir, "fails.lua") + ":2: boom"; !strings.Contains(r.stderr, want) {
		t.Errorf("run's stderr %q should contain %q", r.stderr, want)
	}
	r = cli(t, "local x = 1\nerror(\"boom\")\n", "run", "-").want(t, "run - of a failing script", exitFailure)
	if !strings.Contains(r.stderr, "stdin:2: boom") {
		t.Errorf("run -'s stderr %q should contain stdin:2: boom", r.stderr)
	}

	sock := serveDaemon(t)
	id := strings.TrimSpace(cli(t, "", "create", "--confined", "--socket", sock).want(t, "create --confined", 0).stdout)
	other := strings.TrimSpace(cli(t, "", "create", "--socket", sock).want(t, "create", 0).stdout)
	r = cli(t, "", "exec", id, "-f", filepath.Join(dir, "fails.lua"), "--socket", sock).want(t, "exec -f of a failing file", exitFailure)
	if want := filepath.Join(dir, "fails.lua") + ":2: boom"; !strings.Contains(r.stderr, want) {
		t.Errorf("exec -f's stderr %q should contain %q", r.stderr, want)
	}
	r = cli(t, "", "exec", id, "-e", `local ok, e = pcall(require("interpreters").Interpreter, `+other+`) print(ok, e.type)`, "--socket", sock).want(t, "exec in a confined interpreter", 0)
	if r.stdout != "false\tInterpreterNotFoundError\n" {
		t.Errorf("a confined interpreter reaching another printed %q", r.stdout)
	}
}
