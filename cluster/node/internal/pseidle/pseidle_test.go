package pseidle

import (
	"fmt"
	"os"
	"testing"
)

// The variable linked is pse's own: it names this process's stat file, as
// pse's init set it. (Stop itself is not called here: the sampling's
// timer reads the variable on a goroutine of its own.)
func TestLinkedToPse(t *testing.T) {
	if want := fmt.Sprintf("/proc/%d/stat", os.Getpid()); procStatFile != want {
		t.Fatalf("pse samples %q, want %q: the variable linked is not pse's", procStatFile, want)
	}
}
