package integration

import (
	"errors"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// TestLimitsCPUTotal: an interpreter's lifetime CPU budget ends its calls
// with ErrCPULimit once spent, whichever call spends it, and the worker
// stays up to say so; a sibling is unaffected.
func TestLimitsCPUTotal(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	it := create(t, rt, interpreters.WithCPUTotalLimit(300*time.Millisecond))
	sibling := create(t, rt)
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		// Each call burns about 100 ms of CPU; the budget runs out within a
		// few of them.
		err = it.Exec(`local t = os.clock() while os.clock() - t < 0.1 do end`)
	}
	if !errors.Is(err, interpreters.ErrCPULimit) {
		t.Fatalf("spending the budget: %v, want ErrCPULimit", err)
	}
	if err := it.Exec(`x = 1`); !errors.Is(err, interpreters.ErrCPULimit) {
		t.Fatalf("a call after the budget is spent: %v, want ErrCPULimit", err)
	}
	mustExec(t, sibling, `y = 2`)
	wantEqual(t, "sibling global", global(t, sibling, "y"), int64(2))
}
