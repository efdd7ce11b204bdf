package integration

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// TestSpareMemoryLimitRefusal: an interpreter whose worker was a warm
// spare, started before its limits were known, refuses what its memory
// limit refuses (string.rep and json.encode results past it) as one
// started cold does.
func TestSpareMemoryLimitRefusal(t *testing.T) {
	rt := newRuntime(t, interpreters.WithWarmSpares(1))
	bound := time.After(60 * time.Second)
	for rt.WarmSpares() == 0 { // the spare is started in the background
		select {
		case <-bound:
			t.Fatal("no spare worker was ready within 60s")
		default:
			runtime.Gosched()
		}
	}
	it := create(t, rt, interpreters.WithMemoryLimit(16<<20))
	for refuser, src := range map[string]string{
		"string.rep:":  `local s = string.rep("x", 64 * 1024 * 1024)`,
		"json.encode:": `local s = require("json").encode(string.rep("\1", 4 * 1024 * 1024))`,
	} {
		// Refused before it is built, not caught by the soft limit after.
		err := it.Exec(src)
		if ef := execFailed(t, src, err); ef.Type != "MemoryError" || !strings.HasPrefix(ef.Msg, refuser) || !errors.Is(err, interpreters.ErrMemoryLimit) {
			t.Errorf("%s: %v (type %s), want a MemoryError from %s matching ErrMemoryLimit", src, err, ef.Type, refuser)
		}
	}
}
