package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Named defaults: every wait on a worker is bounded by one of these.
const (
	// DefaultStartTimeout bounds a worker's start and handshake.
	DefaultStartTimeout = 10 * time.Second
	// DefaultKillGrace is how long a cancelled call may take to stop before
	// its worker is killed. A VM stops within a millisecond or so unless a
	// single Go-side operation holds it; the grace keeps a call that ran
	// past its deadline within a second of it.
	DefaultKillGrace = 500 * time.Millisecond
	// exitWait bounds the wait for a worker to exit after its session was
	// closed, before it is killed.
	exitWait = 2 * time.Second
)

// Config configures a Supervisor. The zero value works: workers are this
// executable, logs are discarded, output goes to os.Stdout.
type Config struct {
	// Logger receives the supervisor's and go-plugin's logs.
	Logger hclog.Logger
	// Executable is the worker binary; empty means os.Executable(). It must
	// link the worker package (any program importing subinterp does).
	Executable string
	// StartTimeout bounds a worker's start; 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// KillGrace is how long a cancelled call may take to stop before its
	// worker is killed; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// Stdout is where interpreters created without their own writer print;
	// nil means os.Stdout.
	Stdout io.Writer
	// Defaults apply to every interpreter unless its CreateOptions say
	// otherwise.
	Defaults Limits
	// WarmSpares is how many workers are kept started ahead of need, so
	// Create claims one instead of launching a process. 0: none.
	WarmSpares int
	// NextID, when set, gives the ID of every new interpreter, those
	// created from Lua too, instead of counting up from 1: a cluster node
	// takes IDs from blocks the whole cluster shares out, so no two nodes
	// give the same one. It must never return an ID twice.
	NextID func(ctx context.Context) (int64, error)
	// Queues, when set (with NextID), keeps every queue: those the host
	// creates and those Lua code creates alike, each with an ID from
	// NextID. A cluster node sets it so that its queues are the
	// cluster's. Nil: the supervisor keeps its queues itself.
	Queues QueueStore
	// Peers, when set, gives Lua code the interpreters of the other nodes
	// of a cluster beside this supervisor's; nil: this supervisor's only.
	Peers Peers
}

// Limits bound what one interpreter may use. Zero fields mean no limit.
type Limits struct {
	MemoryBytes int64         // soft heap limit, with a hard kernel limit above it
	CPUPerCall  time.Duration // CPU time one call may use
	CPUTotal    time.Duration // CPU time the interpreter may use in all
	CallTimeout time.Duration // wall-clock deadline of every call
	OutputBytes int64         // stdout bytes one call may write
	// Created caps the interpreters Lua code may create in this one, and
	// in those created from it, alive at once: 0 means DefaultCreated, a
	// negative value no cap. Interpreters created from Lua inherit their
	// creator's limits, writer and library.
	Created int
}

// DefaultCreated is Limits.Created when none is set: room for a script's
// helpers, not for a script that starts processes without end.
const DefaultCreated = 64

func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, err
		}
		c.Executable = exe
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.KillGrace <= 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.Queues != nil && c.NextID == nil {
		return c, errors.New("supervisor: a queue store needs NextID")
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	return c, nil
}

// merge returns l with zero fields taken from d.
func (l Limits) merge(d Limits) Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.CPUPerCall == 0 {
		l.CPUPerCall = d.CPUPerCall
	}
	if l.CPUTotal == 0 {
		l.CPUTotal = d.CPUTotal
	}
	if l.CallTimeout == 0 {
		l.CallTimeout = d.CallTimeout
	}
	if l.OutputBytes == 0 {
		l.OutputBytes = d.OutputBytes
	}
	if l.Created == 0 {
		l.Created = d.Created
	}
	if l.Created == 0 {
		l.Created = DefaultCreated
	}
	return l
}
