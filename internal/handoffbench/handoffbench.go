// Package handoffbench measures queue hand-offs for benchmarks: from the
// start of a put to the return of the get that was waiting for it. The
// local, daemon and cluster queue benchmarks share it so that their
// figures mean the same thing.
package handoffbench

import (
	"slices"
	"testing"
	"time"
)

// Run measures b.N hand-offs, after one that warms up, with get called
// in a loop on a goroutine of its own, and reports their median as
// p50-ns.
func Run(b *testing.B, put func(i int) error, get func() (any, error)) {
	got := make(chan struct{})
	failed := make(chan error, 1)
	go func() {
		for range b.N + 1 {
			if _, err := get(); err != nil {
				failed <- err
				return
			}
			got <- struct{}{}
		}
	}()
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N + 1 {
		start := time.Now()
		if err := put(i); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case err := <-failed:
			b.Fatal(err)
		}
		if i > 0 {
			took = append(took, time.Since(start))
		}
	}
	b.StopTimer()
	if len(took) > 0 {
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
	}
}
