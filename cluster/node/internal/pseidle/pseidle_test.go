package pseidle

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server/pse"
)

// The linked variable is pse's own: sampling works before Stop and fails
// after it, so the timer's next tick cannot re-arm.
func TestStop(t *testing.T) {
	if !strings.HasPrefix(procStatFile, "/proc/") {
		t.Fatalf("pse samples %q, want a /proc file: the variable linked is not pse's", procStatFile)
	}
	var pcpu float64
	var rss, vss int64
	if err := pse.ProcUsage(&pcpu, &rss, &vss); err != nil {
		t.Fatalf("ProcUsage before Stop: %v", err)
	}
	Stop()
	if err := pse.ProcUsage(&pcpu, &rss, &vss); err == nil {
		t.Fatal("ProcUsage after Stop succeeded: the sampling would go on")
	}
}
