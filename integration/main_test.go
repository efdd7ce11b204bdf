package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/internal/proctest"
	"github.com/subinterp/subinterp/interpreters"
	"github.com/subinterp/subinterp/protocol"
)

// leftoverWait bounds how long TestMain waits for worker processes to be
// gone once every runtime has been closed.
const leftoverWait = 3 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	backgroundCloses.Wait()
	for _, e := range backgroundErrs.list() {
		fmt.Fprintf(os.Stderr, "integration: %s\n", e)
		code = 1
	}
	if err := interpreters.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: Shutdown: %v\n", err)
		code = 1
	}
	if left := waitNoChildren(leftoverWait); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "integration: %d child process(es) still present %v after every runtime was closed:\n\t%s\n",
			len(left), leftoverWait, strings.Join(left, "\n\t"))
		code = 1
	}
	os.Exit(code)
}

// waitNoChildren polls until this process has no child processes (zombies
// included) or the timeout passes, and returns the ones that remain.
func waitNoChildren(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		left := childProcesses()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childProcesses describes the processes whose parent is this process
// (proctest.Describe: the pid first). Without /proc it reports none.
func childProcesses() []string {
	var out []string
	for _, p := range proctest.Children() {
		out = append(out, proctest.Describe(p))
	}
	return out
}

// liveWorkerOfOurs reports whether pid is a worker process this test
// binary started and that has not exited.
func liveWorkerOfOurs(pid int) bool {
	ppid, _, state, ok := proctest.Stat(pid)
	if !ok || ppid != os.Getpid() || state == "Z" {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), protocol.WorkerArg)
}
