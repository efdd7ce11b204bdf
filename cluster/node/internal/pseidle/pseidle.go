// Package pseidle keeps nats-server's process sampling out of worker
// processes.
//
// nats-server's pse package samples its process's CPU use once a second
// from a timer its init starts, in every program that links it. A worker
// is the host's executable re-executed, so every worker of a daemon that
// can embed a NATS server would wake once a second for a server it never
// runs; an idle worker must cost no CPU. The sampling re-arms only after
// it has read /proc/PID/stat, so pointing it at a file that does not
// exist ends it at its first tick.
//
// This package's import path sorts before the worker package's, and it
// imports neither it nor anything that does, so its init runs before the
// worker's takes over the process. Not under the race detector: the
// sampling reads the file's name on its timer's goroutine, with nothing
// ordering that after this write, which the detector reports though the
// read comes a second later.
package pseidle

import (
	"os"
	_ "unsafe" // for go:linkname

	_ "github.com/nats-io/nats-server/v2/server/pse" // initialised first: its timer is running when Stop is called
)

//go:linkname procStatFile github.com/nats-io/nats-server/v2/server/pse.procStatFile
var procStatFile string

// Stop ends the sampling at its next tick. The process's CPU use as NATS
// reports it (pse.ProcUsage) fails from then on.
func Stop() { procStatFile = os.DevNull + "/no-such-file" }
