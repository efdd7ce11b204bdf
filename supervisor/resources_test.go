package supervisor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/subinterp/subinterp/protocol"
)

// A failed start names the resource that ran out, whether the host's own
// call failed or the worker died saying so, and nothing else is taken for
// one: a worker's own answer, or an unrelated failure.
func TestCreationFailedNamesTheResource(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string // "" for a plain CodeInterpreter
	}{
		{fmt.Errorf("socketpair: %w", syscall.EMFILE), protocol.ResourceDescriptors},
		{&os.PathError{Op: "pipe", Path: "", Err: syscall.ENFILE}, protocol.ResourceDescriptors},
		{&os.PathError{Op: "fork/exec", Path: "/bin/w", Err: syscall.EAGAIN}, protocol.ResourceProcesses},
		{&os.PathError{Op: "fork/exec", Path: "/bin/w", Err: syscall.ENOMEM}, protocol.ResourceMemory},
		{errors.New("start worker: plugin exited before we could connect; its stderr ends:\nruntime: failed to create new OS thread (have 2 already; errno=11)\nfatal error: newosproc"), protocol.ResourceThreads},
		{errors.New("start worker: timeout while waiting for plugin to start"), ""},
		{fmt.Errorf("init script: %w", &protocol.Error{Code: protocol.CodeExecutionFailed, Msg: "cannot allocate memory"}), ""},
	} {
		got := creationFailed(c.err)
		wantCode := protocol.CodeResource
		if c.want == "" {
			wantCode = protocol.CodeInterpreter
		}
		if got.Code != wantCode || got.Resource != c.want {
			t.Errorf("creationFailed(%q) = %s/%q, want %s/%q", c.err, got.Code, got.Resource, wantCode, c.want)
		}
	}
}
