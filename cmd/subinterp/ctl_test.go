package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/internal/testcert"
	"github.com/subinterp/subinterp/interpreters"
)

// bounded is the longest a test waits for something that must happen: it
// detects a hang, and says nothing about speed.
const bounded = 15 * time.Second

// syncBuffer is a bytes.Buffer safe for a writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// socketPath returns a socket path in a fresh short directory: a Unix
// socket path must fit in 108 bytes.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "d.sock")
}

// serveDaemon serves a daemon in-process until the test ends.
func serveDaemon(t *testing.T) string {
	t.Helper()
	sock := socketPath(t)
	srv, err := daemon.Listen(daemon.Config{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs the CLI in-process.
func cli(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := execute(args, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

func (r result) want(t *testing.T, what string, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit code %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
	return r
}

func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	for _, path := range [][]string{
		{}, {"serve"}, {"create"}, {"ls"}, {"exec"}, {"call"}, {"close"}, {"repl"}, {"run"}, {"version"},
		{"queue"}, {"queue", "create"}, {"queue", "put"}, {"queue", "get"}, {"queue", "ls"}, {"queue", "rm"},
	} {
		r := cli(t, "", append(path, "--help")...).want(t, strings.Join(path, " ")+" --help", 0)
		if !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v --help printed no usage:\n%s", path, r.stdout)
		}
	}
	r := cli(t, "", "--help")
	for _, want := range []string{"SUBINTERP_SOCKET", "/tmp/subinterp-$UID/subinterp.sock", "serve"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the root help does not mention %q", want)
		}
	}
}

func TestNoDaemon(t *testing.T) {
	t.Parallel()
	sock := socketPath(t)
	r := cli(t, "", "ls", "--socket", sock).want(t, "ls without a daemon", exitUnavailable)
	if !strings.Contains(r.stderr, "subinterp serve") || !strings.Contains(r.stderr, sock) {
		t.Errorf("message %q should name the socket and say how to start a daemon", r.stderr)
	}
	// A stale socket: the file is there, nothing answers.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	r = cli(t, "", "create", "--socket", sock).want(t, "create on a stale socket", exitUnavailable)
	if !strings.Contains(r.stderr, "subinterp serve") {
		t.Errorf("message %q should say how to start a daemon", r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	for _, args := range [][]string{
		{"exec"},
		{"exec", "1", "-e", "x = 1", "-f", "file.lua"},
		{"exec", "one", "-e", "x = 1"},
		{"call", "1"},
		{"queue", "create", "--unbound", "sometimes"},
		{"nosuchcommand"},
	} {
		cli(t, "", append(args, "--socket", sock)...).want(t, strings.Join(args, " "), exitUsage)
	}
	cli(t, "", "ls", "--socket", "http://example.com").want(t, "ls on an http address", exitUsage)
	id := strings.TrimSpace(cli(t, "", "create", "--socket", sock).want(t, "create", 0).stdout)
	cli(t, "", "call", id, "tostring", "{not json", "--socket", sock).want(t, "call with bad JSON", exitUsage)
	cli(t, "", "exec", "0", "-e", "x = 1", "--socket", sock).want(t, "exec in main", exitUsage)
}

func TestControlCommands(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	run := func(stdin string, args ...string) result {
		t.Helper()
		return cli(t, stdin, append(args, "--socket", sock)...)
	}
	id := strings.TrimSpace(run("", "create", "--memory-limit", "67108864").want(t, "create", 0).stdout)
	if n, err := strconv.Atoi(id); err != nil || n <= 0 {
		t.Fatalf("create printed %q", id)
	}

	r := run("", "exec", id, "-e", `greeting = "hello" print(greeting)`).want(t, "exec -e", 0)
	if r.stdout != "hello\n" {
		t.Errorf("exec -e printed %q", r.stdout)
	}
	script := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(script, []byte(`io.write(greeting, " from a file")`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run("", "exec", id, "-f", script).want(t, "exec -f", 0); r.stdout != "hello from a file" {
		t.Errorf("exec -f printed %q", r.stdout)
	}
	if r := run(`print(#greeting)`, "exec", id).want(t, "exec from stdin", 0); r.stdout != "5\n" {
		t.Errorf("exec from stdin printed %q", r.stdout)
	}

	r = run("", "exec", id, "-e", `error({type = "ValueError", msg = "spam"})`).want(t, "a failing exec", exitFailure)
	if !strings.Contains(r.stderr, "ValueError: spam") || !strings.Contains(r.stderr, "Uncaught in the interpreter") {
		t.Errorf("a failing exec's stderr: %q", r.stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"function(a, b) return a + b end", "2", "3"}, "5"},
		{[]string{"string.upper", `"spam"`}, `"SPAM"`},
		{[]string{"function() end"}, "null"},
		{[]string{"function() return 1, 'two', 0.5 end"}, `[1,"two",0.5]`},
		{[]string{"function(t) return t end", `{"k": [1, {"n": null}], "f": 1.5}`}, `{"f":1.5,"k":[1,[]]}`},
		{[]string{"function() return greeting end"}, `"hello"`},
	} {
		r := run("", append([]string{"call", id}, c.args...)...).want(t, "call "+strings.Join(c.args, " "), 0)
		if got := strings.TrimSpace(r.stdout); got != c.want {
			t.Errorf("call %v printed %s, want %s", c.args, got, c.want)
		}
	}
	run("", "call", id, "function() return function() end end").want(t, "call with an unshareable result", exitFailure)
	run("", "call", id, "function() error('x') end").want(t, "a raising call", exitFailure)

	r = run("", "ls").want(t, "ls", 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], id+" ") {
		t.Errorf("ls printed:\n%s", r.stdout)
	}
	for _, col := range []string{"WHENCE", "PID", "STATE", "UPTIME", "CALLS", "RSS", "CPU"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("ls header %q lacks %s", lines[0], col)
		}
	}
	r = run("", "ls", "--json").want(t, "ls --json", 0)
	var entries []lsEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("ls --json: %v\n%s", err, r.stdout)
	}
	if e := entries[0]; strconv.FormatInt(e.ID, 10) != id || e.State != "idle" || e.Pid <= 0 || e.Calls < 5 || e.RSSBytes <= 0 {
		t.Errorf("ls --json entry: %+v", e)
	}

	// Queues, across commands: create pins the queue.
	qid := strings.TrimSpace(run("", "queue", "create", "--maxsize", "2").want(t, "queue create", 0).stdout)
	run("", "queue", "put", qid, `{"job": 1}`).want(t, "queue put", 0)
	run("", "call", id, `function(q) q:put("from lua") end`, `{"$queue": `+qid+`}`).want(t, "a queue as an argument", 0)
	run("", "queue", "put", "--nowait", qid, "3").want(t, "put on a full queue", exitFailure)
	r = run("", "queue", "ls", "--json").want(t, "queue ls", 0)
	var qs []queueEntry
	if err := json.Unmarshal([]byte(r.stdout), &qs); err != nil || len(qs) != 1 || qs[0].Size != 2 || !qs[0].Pinned || qs[0].MaxSize != 2 {
		t.Errorf("queue ls --json: %v\n%s", err, r.stdout)
	}
	if r := run("", "queue", "get", qid).want(t, "queue get", 0); strings.TrimSpace(r.stdout) != `{"job":1}` {
		t.Errorf("queue get printed %q", r.stdout)
	}
	if r := run("", "queue", "get", qid).want(t, "queue get", 0); strings.TrimSpace(r.stdout) != `"from lua"` {
		t.Errorf("queue get printed %q", r.stdout)
	}
	run("", "queue", "get", "--nowait", qid).want(t, "get from an empty queue", exitFailure)
	run("", "queue", "get", qid, "--timeout", "100ms").want(t, "get past --timeout", exitFailure)
	run("", "queue", "rm", qid).want(t, "queue rm", 0)
	run("", "queue", "rm", qid).want(t, "queue rm of an unpinned queue", exitUsage)

	// repl, piped.
	r = run("x = 6\nx * 7\nfor i = 1, 2 do\n  print(i)\nend\nerror('oops', 0)\n'after', 1\n", "repl", id).want(t, "piped repl with an error", exitFailure)
	if r.stdout != "42\n1\n2\n\"after\"\t1\n" {
		t.Errorf("repl printed %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "LuaError: oops") {
		t.Errorf("repl's stderr: %q", r.stderr)
	}
	if r := run("return x\n", "repl", id).want(t, "piped repl", 0); r.stdout != "6\n" {
		t.Errorf("repl printed %q", r.stdout)
	}

	run("", "close", id).want(t, "close", 0)
	run("", "close", id).want(t, "close again", exitNotFound)
	run("", "exec", id, "-e", "x = 1").want(t, "exec after close", exitNotFound)
	// The interpreter that was handed the queue held it until now.
	run("", "queue", "get", "--nowait", qid).want(t, "get from a queue nothing holds", exitNotFound)
	if r := run("", "ls").want(t, "ls", 0); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("ls after close:\n%s", r.stdout)
	}
}

func TestExecInterrupted(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	id := strings.TrimSpace(cli(t, "", "create", "--socket", sock).want(t, "create", 0).stdout)
	start := time.Now()
	r := cli(t, "", "exec", id, "-e", "while true do end", "--timeout", "300ms", "--socket", sock)
	if r.code == 0 || time.Since(start) > 10*time.Second {
		t.Errorf("an endless exec under --timeout: exit %d after %v", r.code, time.Since(start))
	}
	// The interpreter stopped cleanly and is usable.
	cli(t, "", "exec", id, "-e", "x = 1", "--socket", sock).want(t, "exec after the timeout", 0)
}

// TestServeCommand runs `serve` in-process and stops it with SIGTERM. It
// is not parallel: the signal goes to the whole test process, and only
// serve may be listening for it.
func TestServeCommand(t *testing.T) {
	sock := socketPath(t)
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute([]string{"serve", "--socket", sock, "--log-format", "json"}, strings.NewReader(""), &out, &errb)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Setenv("SUBINTERP_SOCKET", sock)
	id := strings.TrimSpace(cli(t, "", "create").want(t, "create through SUBINTERP_SOCKET", 0).stdout)
	cli(t, "", "exec", id, "-e", "x = 1").want(t, "exec through SUBINTERP_SOCKET", 0)
	r := cli(t, "", "serve", "--socket", sock).want(t, "a second serve", exitFailure)
	if !strings.Contains(r.stderr, "already serving") {
		t.Errorf("a second serve said %q", r.stderr)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited with %d after SIGTERM:\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket outlived serve: %v", err)
	}
	if !strings.Contains(errb.String(), `"@message":"serving"`) {
		t.Errorf("no JSON log line for serving:\n%s", errb.String())
	}
}

// createIn creates an interpreter in the daemon on sock and returns its ID.
func createIn(t *testing.T, sock string) string {
	t.Helper()
	return strings.TrimSpace(cli(t, "", "create", "--socket", sock).want(t, "create", 0).stdout)
}

// TestExecEmptyCode: -e given empty is an empty chunk, not a request to
// read stdin.
func TestExecEmptyCode(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	id := createIn(t, sock)
	r := cli(t, `print("from stdin")`, "exec", id, "-e", "", "--socket", sock).want(t, "exec -e ''", 0)
	if r.stdout != "" {
		t.Errorf("exec -e '' ran stdin: printed %q", r.stdout)
	}
	cli(t, "", "exec", id, "-e", "", "-f", "-", "--socket", sock).want(t, "exec -e '' -f -", exitUsage)
}

// TestExecUnknownBeforeStdin: the interpreter is looked up before stdin is
// read, so an unknown ID fails at once on a stdin that never closes.
func TestExecUnknownBeforeStdin(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	stdin, w := io.Pipe()
	t.Cleanup(func() { w.Close() })
	done := make(chan int, 1)
	var errb syncBuffer
	go func() {
		done <- execute([]string{"exec", "999", "--socket", sock}, stdin, io.Discard, &errb)
	}()
	select {
	case code := <-done:
		if code != exitNotFound {
			t.Errorf("exec 999 with an open stdin: exit code %d, want %d\n%s", code, exitNotFound, errb.String())
		}
	case <-time.After(bounded):
		t.Fatal("exec 999 waited for stdin to close")
	}
}

// TestReplExpressions: a bare expression prints its values; a blank line
// ends an unfinished chunk, except inside a long string.
func TestReplExpressions(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	id := createIn(t, sock)
	r := cli(t, "x = 6\nx\nprint(1)\nt = {y = 2}\nt.y\nmath.floor(math.pi)\n1+1\nundefined\nx, 'two'\nreturn 1, nil\n", "repl", id, "--socket", sock).want(t, "piped repl of expressions", 0)
	if want := "6\n1\n2\n3\n2\nnull\n6\t\"two\"\n1\tnull\n"; r.stdout != want {
		t.Errorf("repl printed %q, want %q", r.stdout, want)
	}
	r = cli(t, "y = \n\nprint('next')\ns = [[a\n\nb]]\n#s\n", "repl", id, "--socket", sock).want(t, "a blank line in an unfinished chunk", exitFailure)
	if r.stdout != "next\n4\n" {
		t.Errorf("repl printed %q, want the next chunk's output and #s", r.stdout)
	}
	if !strings.Contains(r.stderr, "SyntaxError") {
		t.Errorf("the chunk a blank line ended did not report its syntax error: %q", r.stderr)
	}
}

// TestBadValueCodes: values no Lua value holds are usage errors alike; an
// unknown queue in a value is not found, like any unknown ID.
func TestBadValueCodes(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	qid := strings.TrimSpace(cli(t, "", "queue", "create", "--socket", sock).want(t, "queue create", 0).stdout)
	for _, v := range []string{"9007199254740993", "-9007199254740993", "1e400", "[1, 1e400]", "{not json"} {
		cli(t, "", "queue", "put", qid, v, "--socket", sock).want(t, "queue put "+v, exitUsage)
	}
	cli(t, "", "queue", "put", qid, "9007199254740991", "--socket", sock).want(t, "queue put of 2^53-1", 0)
	cli(t, "", "queue", "put", qid, `{"$queue":999}`, "--socket", sock).want(t, "queue put of an unknown queue", exitNotFound)
	id := createIn(t, sock)
	cli(t, "", "call", id, "tostring", `{"$queue":999}`, "--socket", sock).want(t, "call with an unknown queue", exitNotFound)
	cli(t, "", "call", id, "tostring", "1e400", "--socket", sock).want(t, "call with 1e400", exitUsage)
	// A maxsize of 0 or less is legal: unbounded.
	cli(t, "", "queue", "create", "--maxsize", "-1", "--socket", sock).want(t, "queue create --maxsize -1", 0)
}

// TestTimeoutWording: --timeout says the command timed out, in the same
// words for every command.
func TestTimeoutWording(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	id := createIn(t, sock)
	qid := strings.TrimSpace(cli(t, "", "queue", "create", "--socket", sock).want(t, "queue create", 0).stdout)
	for _, args := range [][]string{
		{"exec", id, "-e", "while true do end"},
		{"call", id, "function() while true do end end"},
		{"queue", "get", qid},
		{"repl", id},
	} {
		stdin := ""
		if args[0] == "repl" {
			stdin = "while true do end\n"
		}
		r := cli(t, stdin, append(args, "--timeout", "200ms", "--socket", sock)...).want(t, strings.Join(args, " ")+" --timeout 200ms", exitFailure)
		if !strings.Contains(r.stderr, "timed out after 200ms") || strings.Contains(r.stderr, "canceled") {
			t.Errorf("%v --timeout 200ms said %q", args, r.stderr)
		}
	}
	if !errors.Is(timedOut(time.Second), context.DeadlineExceeded) || timedOut(time.Second).Error() != "timed out after 1s" {
		t.Errorf("timedOut(1s) = %v, want a DeadlineExceeded that says it timed out after 1s", timedOut(time.Second))
	}
	if se := interrupted(syscall.SIGTERM); se.code != exitTerminated || !errors.Is(se, context.Canceled) {
		t.Errorf("interrupted(SIGTERM) = %v with code %d", se, se.code)
	}
}

// TestFailurePrinting: the formatted error, then the interpreter's display
// only when it says more than the message.
func TestFailurePrinting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		ef   interpreters.ExecutionFailed
		want string
	}{
		{"traceback", interpreters.ExecutionFailed{Formatted: "LuaError: x", Errdisplay: "stack traceback:\n\t<string>:1: in main chunk"},
			"LuaError: x\n\nUncaught in the interpreter:\n\nstack traceback:\n\t<string>:1: in main chunk\n"},
		{"no display", interpreters.ExecutionFailed{Formatted: "MemoryError: memory limit of 1 bytes exceeded"},
			"MemoryError: memory limit of 1 bytes exceeded\n"},
		{"display that repeats", interpreters.ExecutionFailed{Formatted: "SyntaxError: <string>: x near <eof>", Errdisplay: "SyntaxError: <string>: x near <eof>"},
			"SyntaxError: <string>: x near <eof>\n"},
		{"pointer", interpreters.ExecutionFailed{Formatted: "SyntaxError: s", Errdisplay: "  x = = 1\n      ^\nSyntaxError: s"},
			"SyntaxError: s\n\nUncaught in the interpreter:\n\n  x = = 1\n      ^\n"},
	} {
		var b strings.Builder
		printFailure(&b, &c.ef)
		if b.String() != c.want {
			t.Errorf("%s: printed %q, want %q", c.name, b.String(), c.want)
		}
	}
	sock := serveDaemon(t)
	id := createIn(t, sock)
	r := cli(t, "", "exec", id, "-e", "x = = 1", "--socket", sock).want(t, "exec of a syntax error", exitFailure)
	if n := strings.Count(r.stderr, "syntax error near"); n != 1 {
		t.Errorf("the syntax error's message printed %d times:\n%s", n, r.stderr)
	}
}

// TestCloseReportsInOrder: every failure of close, in argument order; the
// first sets the exit code.
func TestCloseReportsInOrder(t *testing.T) {
	t.Parallel()
	sock := serveDaemon(t)
	id := createIn(t, sock)
	r := cli(t, "", "close", "999", id, "abc", "204", "--socket", sock).want(t, "close with unknown IDs", exitNotFound)
	i999, iabc, i204 := strings.Index(r.stderr, "999"), strings.Index(r.stderr, `"abc"`), strings.Index(r.stderr, "204")
	if i999 < 0 || iabc < i999 || i204 < iabc {
		t.Errorf("close's failures out of argument order:\n%s", r.stderr)
	}
	cli(t, "", "exec", id, "-e", "", "--socket", sock).want(t, "exec in the closed interpreter", exitNotFound)
}

// TestTLSVerificationCode: a daemon whose certificate fails verification
// is no missing daemon: exit 77 with a message that says TLS.
func TestTLSVerificationCode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverTLS, caFile := selfSigned(t, dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := daemon.Listen(daemon.Config{Socket: socketPath(t), Listen: "127.0.0.1:0", TLS: serverTLS, TokenFile: tokenFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := "tcp://" + srv.TCPAddr().String()
	r := cli(t, "", "ls", "--socket", addr, "--token-file", tokenFile).want(t, "ls without the CA", exitNoPerm)
	if !strings.Contains(r.stderr, "TLS verification") || !strings.Contains(r.stderr, "--tls-ca") {
		t.Errorf("the verification failure said %q", r.stderr)
	}
	cli(t, "", "ls", "--socket", addr, "--token-file", tokenFile, "--tls-ca", caFile).want(t, "ls with the CA", 0)
}

// selfSigned makes a certificate for 127.0.0.1: the server's TLS
// configuration, and the file of the certificate as its own CA.
func selfSigned(t *testing.T, dir string) (*tls.Config, string) {
	t.Helper()
	server, caPEM, err := testcert.New()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return server, caFile
}

// TestEnvOnlyConnectionSettings: the environment sets where the daemon is
// and how to reach it, never a command's input. Not parallel: it sets the
// process's environment.
func TestEnvOnlyConnectionSettings(t *testing.T) {
	sock := serveDaemon(t)
	t.Setenv("SUBINTERP_SOCKET", sock)
	t.Setenv("SUBINTERP_CODE", `print("from the environment")`)
	t.Setenv("SUBINTERP_FILE", "/nonexistent.lua")
	id := strings.TrimSpace(cli(t, "", "create").want(t, "create through SUBINTERP_SOCKET", 0).stdout)
	r := cli(t, `print("from stdin")`, "exec", id).want(t, "exec with SUBINTERP_CODE set", 0)
	if r.stdout != "from stdin\n" {
		t.Errorf("exec printed %q: the environment gave it its code", r.stdout)
	}
	t.Setenv("SUBINTERP_MAXSIZE", "x")
	cli(t, "", "queue", "create").want(t, "queue create with SUBINTERP_MAXSIZE set", 0)
	t.Setenv("SUBINTERP_TIMEOUT", "x")
	cli(t, "", "ls").want(t, "ls with a bad SUBINTERP_TIMEOUT", exitUsage)
}
