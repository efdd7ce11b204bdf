package integration

import (
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

// hostDeathEnv names the file a helper host writes its workers' pids to; it
// is set only in the helper process TestHostDeath starts.
const hostDeathEnv = "SUBINTERP_TEST_HOSTDEATH_PIDFILE"

// hostDeathInterpreters is how many live interpreters the helper host has
// when it is killed; half of them are in the middle of a call.
const hostDeathInterpreters = 20

// TestHostDeathHelper is the host TestHostDeath kills: run on its own it
// skips. It creates the interpreters, writes their workers' pids to the
// file named by hostDeathEnv and waits to be killed.
func TestHostDeathHelper(t *testing.T) {
	path := os.Getenv(hostDeathEnv)
	if path == "" {
		t.Skip("the host process TestHostDeath starts and kills")
	}
	rt := interpreters.New()
	// One at a time: twenty race-enabled workers starting at once on a
	// loaded machine can each take longer than a worker's start timeout.
	its := make([]*interpreters.Interpreter, hostDeathInterpreters)
	for i := range its {
		it, err := rt.Create()
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		its[i] = it
	}
	pids := make([]string, len(its))
	for i, it := range its {
		if i%2 == 0 {
			th := it.CallInThread("function() while true do end end")
			waitRunning(t, it, th.Done())
		}
		pids[i] = strconv.Itoa(pid(t, it))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(pids, " ")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	// Wait to be killed, but do not outlive a parent that went away.
	parent := os.Getppid()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		if os.Getppid() != parent {
			t.Fatal("the parent test process went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the helper host was never killed")
}

// procStartTime reads a process's start time (field 22 of /proc/PID/stat),
// which tells a process from a later one that reuses its pid.
func procStartTime(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return "", false
	}
	return fields[19], true
}

// TestHostDeath: a host killed with SIGKILL while it has 20 live
// interpreters, some running, leaves no worker process behind: each one
// dies of its host's death (how soon is logged; only a worker that never
// goes fails the test).
func TestHostDeath(t *testing.T) {
	if os.Getenv(hostDeathEnv) != "" {
		t.Skip("inside the helper host")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pids")
	cmd := exec.Command(exe, "-test.run=^TestHostDeathHelper$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), hostDeathEnv+"="+pidFile)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper host: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	host := cmd.Process.Pid

	var pids []int
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if b, err := os.ReadFile(pidFile); err == nil {
			for _, f := range strings.Fields(string(b)) {
				p, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file %q: %v", b, err)
				}
				pids = append(pids, p)
			}
			break
		}
		select {
		case <-exited:
			t.Fatalf("the helper host exited before creating its interpreters:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper host did not create its interpreters within 2m:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) != hostDeathInterpreters {
		t.Fatalf("the helper host reported %d workers, want %d", len(pids), hostDeathInterpreters)
	}

	// Before the kill: every worker is a live child of the helper host.
	started := make(map[int]string, len(pids))
	for _, p := range pids {
		ppid, _, state, ok := proctest.Stat(p)
		st, ok2 := procStartTime(p)
		if !ok || !ok2 || ppid != host || state == "Z" {
			t.Fatalf("worker %d before the kill: parent %d (want the host %d), state %q, found %v", p, ppid, host, state, ok && ok2)
		}
		started[p] = st
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing the helper host: %v", err)
	}
	killed := time.Now()
	select {
	case <-exited:
	case <-time.After(bounded):
		t.Fatalf("the helper host did not die within %v of SIGKILL", bounded)
	}

	// A worker counts as alive while a process with its pid and start time
	// exists and is not a zombie (a dead child waiting for init to reap it).
	aliveWorkers := func() []string {
		var left []string
		for _, p := range pids {
			_, comm, state, ok := proctest.Stat(p)
			st, ok2 := procStartTime(p)
			if ok && ok2 && st == started[p] && state != "Z" {
				left = append(left, strconv.Itoa(p)+" ("+comm+") state "+state)
			}
		}
		return left
	}
	var left []string
	for {
		left = aliveWorkers()
		if len(left) == 0 || time.Since(killed) > bounded {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Fatalf("%v after the host's SIGKILL, %d of its %d workers are alive:\n\t%s",
			time.Since(killed).Round(time.Millisecond), len(left), len(pids), strings.Join(left, "\n\t"))
	}
	t.Logf("all %d workers were gone %v after the host's SIGKILL", len(pids), time.Since(killed).Round(time.Millisecond))
	if strings.Contains(out.String(), "panic:") {
		t.Errorf("the helper host panicked:\n%s", out.String())
	}
}
