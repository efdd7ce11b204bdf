package density

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

// TestMain fails the run when a worker outlives the runtimes that started
// it.
func TestMain(m *testing.M) {
	serveHelper()
	code := m.Run()
	if err := interpreters.Shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "density: Shutdown: %v\n", err)
		code = 1
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(proctest.Children()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := proctest.Children(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "density: child processes still present after every runtime was closed: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v (%T), want %#v (%T)", what, got, got, want, want)
	}
}

// orphanedWorkers lists live workers reparented to init.
func orphanedWorkers() []string {
	var out []string
	for _, p := range proctest.Orphans() {
		_, comm, _, ok := proctest.Stat(p)
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		if ok && err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), protocol.WorkerArg) {
			out = append(out, fmt.Sprintf("%d (%s)", p, comm))
		}
	}
	return out
}
