package integration

import (
	"errors"
	"testing"

	"github.com/subinterp/subinterp/interpreters"
)

// TestSentinelTree: the error classes mirror CPython's.
func TestSentinelTree(t *testing.T) {
	t.Parallel()
	under := []error{interpreters.ErrInterpreterNotFound, interpreters.ErrAlreadyRunning}
	for _, e := range under {
		if !errors.Is(e, interpreters.ErrInterpreter) {
			t.Errorf("%v should match ErrInterpreter", e)
		}
	}
	apart := []error{
		interpreters.ErrNotShareable, interpreters.ErrInvalidArgument,
		interpreters.ErrQueueEmpty, interpreters.ErrQueueFull, interpreters.ErrQueueNotFound,
		interpreters.ErrItemInterpreterDestroyed,
	}
	for _, e := range apart {
		if errors.Is(e, interpreters.ErrInterpreter) {
			t.Errorf("%v should not match ErrInterpreter", e)
		}
	}
	if errors.Is(interpreters.ErrInterpreterNotFound, interpreters.ErrAlreadyRunning) ||
		errors.Is(interpreters.ErrAlreadyRunning, interpreters.ErrInterpreterNotFound) {
		t.Error("ErrInterpreterNotFound and ErrAlreadyRunning should be distinct")
	}
}
