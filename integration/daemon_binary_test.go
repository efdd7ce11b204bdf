package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// serveProc is `subinterp serve` running as a child process.
type serveProc struct {
	cmd    *exec.Cmd
	socket string
	logs   *syncBuffer
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// startServe runs the built binary's serve command on socket, with the
// umask cleared so that the socket's mode is the daemon's own doing. It is
// killed when the test ends if it is still running.
func startServe(t testing.TB, bin, socket string, args ...string) *serveProc {
	t.Helper()
	all := append([]string{"-c", `umask 0 && exec "$0" "$@"`, bin, "serve", "--socket", socket, "--log-format", "json", "--log-level", "debug"}, args...)
	cmd := exec.Command("/bin/sh", all...)
	cmd.Env = cleanEnv()
	s := &serveProc{cmd: cmd, socket: socket, logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
	})
	deadline := time.Now().Add(bounded)
	for {
		// Dialling, not the file's existence, tells a stale socket from
		// the new daemon's.
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("serve exited at start (%v):\n%s", s.err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not create %s within %v:\n%s", socket, bounded, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for serve to exit and returns its exit code.
func (s *serveProc) wait(t testing.TB, within time.Duration) int {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		t.Fatalf("serve did not exit within %v:\n%s", within, s.logs.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

// cleanEnv is the test's environment without SUBINTERP_ settings, which
// would change what the CLI does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUBINTERP_") {
			env = append(env, kv)
		}
	}
	return env
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with args (and stdin) to completion, within
// bounded. prefix, when given, goes before the binary (setpriv ...).
func runCLI(t *testing.T, prefix []string, bin, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bounded)
	defer cancel()
	argv := append(append(append([]string(nil), prefix...), bin), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%v: %v", argv, err)
	}
	return cliResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
}

func (r cliResult) want(t *testing.T, what string, code int) cliResult {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit code %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
	return r
}

// lsJSON returns `ls --json` of the daemon.
func lsJSON(t *testing.T, bin, socket string) []map[string]any {
	t.Helper()
	r := runCLI(t, nil, bin, "", "ls", "--json", "--socket", socket).want(t, "ls --json", 0)
	var entries []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("ls --json printed %q: %v", r.stdout, err)
	}
	return entries
}

// processGone reports whether pid no longer runs: no such process, or a
// zombie waiting for a parent that is not this test.
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	_, _, state, ok := proctest.Stat(pid)
	return !ok || state == "Z"
}

func waitProcessGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Errorf("worker process %d still runs", pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDaemonBinary drives the built binary: serve, the control commands,
// another user's refusal, SIGTERM and a killed daemon.
func TestDaemonBinary(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dir := socketDir(t)
	if err := os.Chmod(dir, 0o755); err != nil { // other users must reach the socket to be refused by it
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "d.sock")
	srv := startServe(t, bin, sock, "--shutdown-grace", "300ms", "--kill-grace", "300ms")

	t.Run("SocketMode", func(t *testing.T) {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v under umask 0, want 0600", fi.Mode().Perm())
		}
	})

	var id string
	t.Run("CLI", func(t *testing.T) {
		id = strings.TrimSpace(runCLI(t, nil, bin, "", "create", "--socket", sock).want(t, "create", 0).stdout)
		if n, err := strconv.Atoi(id); err != nil || n <= 0 {
			t.Fatalf("create printed %q, want an ID", id)
		}
		r := runCLI(t, nil, bin, "", "exec", id, "-e", `x = 5 print("hi", x)`, "--socket", sock).want(t, "exec -e", 0)
		wantEqual(t, "exec output", r.stdout, "hi\t5\n")
		r = runCLI(t, nil, bin, `print("from stdin")`, "exec", id, "--socket", sock).want(t, "exec from stdin", 0)
		wantEqual(t, "exec stdin output", r.stdout, "from stdin\n")
		r = runCLI(t, nil, bin, "", "call", id, "function(a, t) return x + a, t end", "2", `{"k":[1,"v"]}`, "--socket", sock).want(t, "call", 0)
		wantEqual(t, "call output", r.stdout, `[7,{"k":[1,"v"]}]`+"\n")
		// The socket from the environment.
		cmd := exec.Command(bin, "ls")
		cmd.Env = append(cleanEnv(), "SUBINTERP_SOCKET="+sock)
		out, err := cmd.Output()
		if err != nil || !strings.Contains(string(out), "_interpreters module") {
			t.Errorf("ls with SUBINTERP_SOCKET: %v\n%s", err, out)
		}
		entries := lsJSON(t, bin, sock)
		if len(entries) != 1 || entries[0]["id"] != float64(mustAtoi(t, id)) || entries[0]["state"] != "idle" || entries[0]["pid"].(float64) <= 0 {
			t.Errorf("ls --json = %v", entries)
		}
		r = runCLI(t, nil, bin, "", "exec", id, "-e", `error("boom")`, "--socket", sock).want(t, "a failing exec", 1)
		if !strings.Contains(r.stderr, "LuaError") || !strings.Contains(r.stderr, "boom") {
			t.Errorf("a failing exec's stderr: %q", r.stderr)
		}
		runCLI(t, nil, bin, "", "exec", "999", "-e", "x = 1", "--socket", sock).want(t, "exec in an unknown interpreter", 3)
		r = runCLI(t, nil, bin, "", "ls", "--socket", filepath.Join(dir, "none.sock")).want(t, "ls without a daemon", 69)
		if !strings.Contains(r.stderr, "subinterp serve") {
			t.Errorf("no-daemon message %q does not say how to start one", r.stderr)
		}

		// A Go program sees what the CLI did.
		ctx, cancel := context.WithTimeout(t.Context(), bounded)
		defer cancel()
		rt, err := interpreters.Dial(ctx, "unix://"+sock)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		it, err := rt.Lookup(int64(mustAtoi(t, id)))
		if err != nil {
			t.Fatal(err)
		}
		wantEqual(t, "x through Dial", global(t, it, "x"), int64(5))
	})

	t.Run("OtherUser", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("running a client as another user needs root")
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("setpriv is not installed; cannot run a client as another user")
		}
		nobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
		r := runCLI(t, nobody, bin, "", "ls", "--socket", sock).want(t, "ls as another user (mode 0600)", 77)
		if !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("refusal by the socket's mode: %q", r.stderr)
		}
		// Past the file mode, the daemon's own check refuses the user.
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		r = runCLI(t, nobody, bin, "", "ls", "--socket", sock).want(t, "ls as another user (uid check)", 77)
		if err := os.Chmod(sock, 0o600); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.stderr, "uid 65534 may not use this daemon") {
			t.Errorf("refusal by the daemon: %q", r.stderr)
		}
		// A daemon that allows the user serves it.
		allowSock := filepath.Join(dir, "allow.sock")
		allow := startServe(t, bin, allowSock, "--allow-uid", "65534")
		runCLI(t, nobody, bin, "", "ls", "--socket", allowSock).want(t, "ls as an allowed user", 0)
		_ = allow.cmd.Process.Signal(syscall.SIGTERM)
		allow.wait(t, bounded)
	})

	t.Run("SIGTERM", func(t *testing.T) {
		entries := lsJSON(t, bin, sock)
		var pids []int
		for _, e := range entries {
			pids = append(pids, int(e["pid"].(float64)))
		}
		if len(pids) == 0 {
			t.Fatal("no interpreter to watch")
		}
		// A call in flight when the daemon is told to stop.
		loop := exec.Command(bin, "exec", id, "-e", "while true do end", "--socket", sock)
		loop.Env = cleanEnv()
		var loopErr bytes.Buffer
		loop.Stderr = &loopErr
		if err := loop.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(bounded)
		for {
			es := lsJSON(t, bin, sock)
			if len(es) > 0 && es[0]["state"] == "running" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the loop was never seen running")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := srv.wait(t, bounded); code != 0 {
			t.Errorf("serve exited with %d after SIGTERM, want 0:\n%s", code, srv.logs.String())
		}
		_ = loop.Wait()
		if code := loop.ProcessState.ExitCode(); code != 69 || !strings.Contains(loopErr.String(), "shut down") {
			t.Errorf("the call in flight: exit code %d, stderr %q; want 69 and a shutdown message", code, loopErr.String())
		}
		for _, p := range pids {
			waitProcessGone(t, p)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after SIGTERM: %v", err)
		}
		if !strings.Contains(srv.logs.String(), `"@message":"stopped"`) {
			t.Errorf("no clean stop in the log:\n%s", srv.logs.String())
		}
	})

	t.Run("Killed", func(t *testing.T) {
		ksock := filepath.Join(dir, "k.sock")
		k := startServe(t, bin, ksock)
		ctx, cancel := context.WithTimeout(t.Context(), bounded)
		defer cancel()
		rt, err := interpreters.Dial(ctx, ksock)
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		it := create(t, rt)
		p := pid(t, it)
		loop := startExec(t.Context(), it, "while true do end")
		waitRunning(t, it, loop.done)
		_ = k.cmd.Process.Signal(syscall.SIGKILL)
		_, err = loop.wait(t)
		wantErr(t, "a call when the daemon was killed", err, interpreters.ErrUnavailable)
		// The worker's session with the dead daemon was its lifeline.
		waitProcessGone(t, p)
		// The stale socket does not stop a new daemon. The killed one is
		// waited for first: until it is reaped its listener may still
		// accept, and startServe would take it for the new daemon.
		k.wait(t, bounded)
		again := startServe(t, bin, ksock)
		if r := runCLI(t, nil, bin, "", "ls", "--socket", ksock); r.code != 0 {
			t.Errorf("ls on the restarted daemon: exit code %d, stderr %q; the daemon's log:\n%s", r.code, r.stderr, again.logs.String())
		}
		_ = again.cmd.Process.Signal(syscall.SIGTERM)
		if code := again.wait(t, bounded); code != 0 {
			t.Errorf("the restarted daemon exited with %d (%v); its log:\n%s", code, again.cmd.ProcessState, again.logs.String())
		}
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitLog waits until serve's log holds want n times or more.
func (s *serveProc) waitLog(t testing.TB, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(bounded)
	for strings.Count(s.logs.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log %s within %v:\n%s", want, bounded, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cliProc is a CLI command running as a child process.
type cliProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
}

// startCLI starts the binary with args; stdin nil is the null device. It
// is killed when the test ends if it is still running.
func startCLI(t *testing.T, bin string, stdin io.Reader, args ...string) *cliProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = stdin
	p := &cliProc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// wait waits for the command to exit and returns its exit code.
func (p *cliProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(bounded):
		t.Fatalf("%v did not exit within %v; stderr:\n%s", p.cmd.Args, bounded, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// startLoop runs an endless exec in interpreter id and waits until the
// daemon lists it running.
func startLoop(t *testing.T, bin, sock, id string) *cliProc {
	t.Helper()
	loop := startCLI(t, bin, nil, "exec", id, "-e", "while true do end", "--socket", sock)
	deadline := time.Now().Add(bounded)
	for {
		es := lsJSON(t, bin, sock)
		if len(es) > 0 && es[0]["state"] == "running" {
			return loop
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop was never seen running")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeBinarySignals: SIGHUP shuts the daemon down as SIGTERM does; a
// second signal forces a shutdown whose grace has not run out; a zero
// --shutdown-grace means no grace.
func TestServeBinarySignals(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dir := socketDir(t)

	t.Run("SIGHUP", func(t *testing.T) {
		sock := filepath.Join(dir, "hup.sock")
		srv := startServe(t, bin, sock)
		runCLI(t, nil, bin, "", "create", "--socket", sock).want(t, "create", 0)
		worker := int(lsJSON(t, bin, sock)[0]["pid"].(float64))
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if code := srv.wait(t, bounded); code != 0 {
			t.Errorf("serve exited with %d after SIGHUP, want 0:\n%s", code, srv.logs.String())
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket still there after SIGHUP: %v", err)
		}
		waitProcessGone(t, worker)
		if !strings.Contains(srv.logs.String(), `"@message":"stopped"`) {
			t.Errorf("no clean stop in the log:\n%s", srv.logs.String())
		}
	})

	t.Run("SecondSignalForces", func(t *testing.T) {
		sock := filepath.Join(dir, "force.sock")
		srv := startServe(t, bin, sock, "--shutdown-grace", "1h")
		id := strings.TrimSpace(runCLI(t, nil, bin, "", "create", "--socket", sock).want(t, "create", 0).stdout)
		loop := startLoop(t, bin, sock, id)
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		srv.waitLog(t, `"@message":"shutting down"`, 1)
		if err := srv.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := srv.wait(t, bounded); code != 0 {
			t.Errorf("serve exited with %d after a forced stop, want 0:\n%s", code, srv.logs.String())
		}
		if !strings.Contains(srv.logs.String(), "shutdown forced") {
			t.Errorf("the log does not say the shutdown was forced:\n%s", srv.logs.String())
		}
		if code := loop.wait(t); code != 69 || !strings.Contains(loop.stderr.String(), "shut down") {
			t.Errorf("the call in flight: exit code %d, stderr %q; want 69 and a shutdown message", code, loop.stderr.String())
		}
	})

	t.Run("NoGrace", func(t *testing.T) {
		sock := filepath.Join(dir, "nograce.sock")
		srv := startServe(t, bin, sock, "--shutdown-grace", "0")
		id := strings.TrimSpace(runCLI(t, nil, bin, "", "create", "--socket", sock).want(t, "create", 0).stdout)
		loop := startLoop(t, bin, sock, id)
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := srv.wait(t, bounded); code != 0 {
			t.Errorf("serve exited with %d, want 0:\n%s", code, srv.logs.String())
		}
		logs := srv.logs.String()
		if !strings.Contains(logs, `"grace":0,`) || strings.Contains(logs, "after the grace period") {
			t.Errorf("--shutdown-grace 0 gave the call in flight a grace:\n%s", logs)
		}
		if code := loop.wait(t); code != 69 {
			t.Errorf("the call in flight: exit code %d, want 69; stderr %q", code, loop.stderr.String())
		}
	})
}

// TestCLIBinaryInterrupts: a command cut short by SIGINT exits 130 and
// says it was interrupted, and by SIGTERM 143, wherever the signal finds
// it: waiting on a queue, reading stdin, connecting.
func TestCLIBinaryInterrupts(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dir := socketDir(t)
	sock := filepath.Join(dir, "d.sock")
	srv := startServe(t, bin, sock)
	empty := strings.TrimSpace(runCLI(t, nil, bin, "", "queue", "create", "--socket", sock).want(t, "queue create", 0).stdout)
	full := strings.TrimSpace(runCLI(t, nil, bin, "", "queue", "create", "--maxsize", "1", "--socket", sock).want(t, "queue create", 0).stdout)
	runCLI(t, nil, bin, "", "queue", "put", full, "1", "--socket", sock).want(t, "queue put", 0)
	id := strings.TrimSpace(runCLI(t, nil, bin, "", "create", "--socket", sock).want(t, "create", 0).stdout)

	for _, c := range []struct {
		name  string
		args  []string
		sig   syscall.Signal
		code  int
		stdin bool // a stdin that never closes
	}{
		{"QueueGetSIGINT", []string{"queue", "get", empty}, syscall.SIGINT, 130, false},
		{"QueuePutSIGINT", []string{"queue", "put", full, "2"}, syscall.SIGINT, 130, false},
		{"QueueGetSIGTERM", []string{"queue", "get", empty}, syscall.SIGTERM, 143, false},
		{"ExecStdinSIGINT", []string{"exec", id}, syscall.SIGINT, 130, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdin io.Reader
			if c.stdin {
				// An *os.File goes to the child as it is: Wait does not
				// wait on a copy from it.
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close(); w.Close() })
				stdin = r
			}
			// Once its connection is logged, the command has its signal
			// handling in place.
			n := strings.Count(srv.logs.String(), `"@message":"client connected"`)
			p := startCLI(t, bin, stdin, append(c.args, "--socket", sock)...)
			srv.waitLog(t, `"@message":"client connected"`, n+1)
			if err := p.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t); code != c.code || !strings.Contains(p.stderr.String(), "interrupted") {
				t.Errorf("%v cut short by %v: exit code %d, stderr %q; want %d and that it was interrupted", c.args, c.sig, code, p.stderr.String(), c.code)
			}
		})
	}

	t.Run("CreateConnectingSIGINT", func(t *testing.T) {
		// A socket that accepts and never answers: create is connecting.
		hung := filepath.Join(dir, "hung.sock")
		l, err := net.Listen("unix", hung)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := l.Accept(); err == nil {
				accepted <- c
			}
		}()
		// --timeout 1h: the hello's own deadline is then an hour away,
		// and only the signal can end the wait for its answer.
		p := startCLI(t, bin, nil, "create", "--socket", hung, "--timeout", "1h")
		select {
		case c := <-accepted:
			defer c.Close()
		case <-time.After(bounded):
			t.Fatal("create never connected")
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != 130 || !strings.Contains(p.stderr.String(), "interrupted") {
			t.Errorf("create interrupted while connecting: exit code %d, stderr %q; want 130 and that it was interrupted", code, p.stderr.String())
		}
	})
}
