//go:build !unix

package worker

import "time"

var processStart = time.Now()

// cpuSeconds falls back to the time since start where getrusage is missing.
func cpuSeconds() float64 {
	return time.Since(processStart).Seconds()
}
