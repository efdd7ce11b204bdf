package density

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
)

// helperEnv, set, makes this test binary a second host, which holds
// interpreters for the test and answers its commands on stdin. A host can
// hold no more interpreters than its descriptors allow (three each), and
// the hard RLIMIT_NOFILE of an unprivileged process may be too low for all
// of a test's: the test then holds some in a second host, on the same
// machine and as light as itself.
const helperEnv = "SUBINTERP_DENSITY_HOST"

// helperReply is the second host's answer to a command.
type helperReply struct {
	Errs       []string `json:",omitempty"` // the first failures
	Failures   int      `json:",omitempty"` // how many there were
	Pids       []int    `json:",omitempty"`
	Listed     int      `json:",omitempty"` // ListAll's length
	Goroutines int      `json:",omitempty"`
	Children   []int    `json:",omitempty"`
}

// serveHelper runs the second host when this process is one. Commands,
// one a line: "create FROM TO" (interpreters whose global k is FROM …
// TO-1), "call" (each answers k + 1), "list" (ListAll and the workers'
// pids), "close" (every one; the children left), "quit". It exits when
// stdin ends: the test's end is its end.
func serveHelper() {
	if os.Getenv(helperEnv) == "" {
		return
	}
	rt := interpreters.New()
	// One interpreter first, as in the test's own host: what a runtime
	// starts once is not any interpreter's.
	if it, err := rt.Create(); err == nil {
		_ = it.Close()
	}
	var its []*interpreters.Interpreter
	var base int
	in := bufio.NewScanner(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	for in.Scan() {
		f := strings.Fields(in.Text())
		var r helperReply
		record := func(errs []error) {
			for _, err := range errs {
				if err != nil {
					if r.Failures++; r.Failures <= 5 {
						r.Errs = append(r.Errs, err.Error())
					}
				}
			}
		}
		switch f[0] {
		case "create":
			from, _ := strconv.Atoi(f[1])
			to, _ := strconv.Atoi(f[2])
			base = from
			its = make([]*interpreters.Interpreter, to-from)
			record(inLanes(len(its), func(i int) error {
				it, err := rt.Create()
				if err != nil {
					return fmt.Errorf("Create: %w", err)
				}
				its[i] = it
				return it.Exec("k = " + strconv.Itoa(base+i))
			}))
		case "call":
			record(inLanes(len(its), func(i int) error {
				got, err := its[i].Call("function(d) return k + d end", 1)
				if err == nil && got != int64(base+i+1) {
					err = fmt.Errorf("%v.Call = %#v, want %d", its[i], got, base+i+1)
				}
				return err
			}))
		case "list":
			all, err := rt.ListAll()
			record([]error{err})
			r.Listed = len(all)
			for _, it := range its {
				p, err := it.Pid()
				record([]error{err})
				r.Pids = append(r.Pids, p)
			}
			r.Goroutines = runtime.NumGoroutine()
		case "close":
			record(inLanes(len(its), func(i int) error { return its[i].Close() }))
			its = nil
			r.Children = proctest.Children()
			r.Goroutines = runtime.NumGoroutine()
		case "quit":
			record([]error{rt.Close()})
			r.Children = proctest.Children()
		}
		if err := enc.Encode(r); err != nil {
			os.Exit(1)
		}
	}
	_ = rt.Close()
	os.Exit(0)
}

// secondHost is a host process of the test's.
type secondHost struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *json.Decoder
}

// startSecondHost starts this binary as a second host, ended when the
// test ends.
func startSecondHost(t *testing.T) *secondHost {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &secondHost{cmd: exec.Command(exe, "-test.run=^$")}
	h.cmd.Env = append(os.Environ(), helperEnv+"=1")
	h.cmd.Stderr = os.Stderr
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.out = json.NewDecoder(stdout)
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("starting the second host: %v", err)
	}
	t.Cleanup(func() {
		if h.stdin != nil {
			h.stdin.Close()
			_ = h.cmd.Wait()
		}
	})
	return h
}

// do sends the second host a command and returns its reply; its failures
// fail t, as the test's own would.
func (h *secondHost) do(t *testing.T, cmd string) helperReply {
	t.Helper()
	var r helperReply
	if _, err := fmt.Fprintln(h.stdin, cmd); err != nil {
		t.Fatalf("second host, %s: %v", cmd, err)
	}
	if err := h.out.Decode(&r); err != nil {
		t.Fatalf("second host, %s: %v", cmd, err)
	}
	for _, e := range r.Errs {
		t.Errorf("second host, %s: %s", cmd, e)
	}
	if r.Failures > len(r.Errs) {
		t.Errorf("second host, %s: %d failures in all", cmd, r.Failures)
	}
	return r
}

// quit closes the second host's runtime and waits for it to exit.
func (h *secondHost) quit(t *testing.T) helperReply {
	t.Helper()
	r := h.do(t, "quit")
	h.stdin.Close()
	h.stdin = nil
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("the second host: %v", err)
	}
	return r
}
