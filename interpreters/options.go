package interpreters

import (
	"crypto/tls"
	"io"
	"os"
	"strings"
	"time"

	"github.com/subinterp/subinterp/supervisor"
)

// Option configures Create, or a whole Runtime when given to New or Dial:
// there it sets the defaults of every interpreter the runtime creates.
// Each option says where it applies; given anywhere else it is an error
// (ErrInvalidArgument naming it), never silently ignored.
type Option func(*options)

// place is a set of the calls an option may be given to.
type place uint8

const (
	onNew place = 1 << iota
	onDial
	onCreate
	anywhere = onNew | onDial | onCreate
)

// placedOption records an option that was given and where it applies.
type placedOption struct {
	name  string
	where place
}

// optionAt returns the option called name, which applies where and sets
// what set sets. An option made otherwise applies anywhere.
func optionAt(name string, where place, set func(*options)) Option {
	return func(o *options) {
		set(o)
		if where != anywhere {
			o.placed = append(o.placed, placedOption{name, where})
		}
	}
}

// misplaced is the error for the first option given to call (one of
// onNew, onDial, onCreate) that does not apply there; nil when all do.
func (o *options) misplaced(call place) error {
	for _, p := range o.placed {
		if p.where&call != 0 {
			continue
		}
		var valid []string
		for _, c := range []place{onNew, onDial, onCreate} {
			if p.where&c != 0 {
				valid = append(valid, c.String())
			}
		}
		return errorf(ErrInvalidArgument, "%s is not an option of %s (only of %s)", p.name, call, strings.Join(valid, " or "))
	}
	return nil
}

func (p place) String() string {
	switch p {
	case onNew:
		return "New"
	case onDial:
		return "Dial"
	case onCreate:
		return "Create"
	}
	return "?"
}

type options struct {
	stdout  io.Writer
	stdlib  bool
	limits  supervisor.Limits
	restart *supervisor.RestartPolicy
	spares  int
	token   string
	tls     *tls.Config

	funcs    map[string]HostFunc
	modules  map[string]string
	confined bool
	err      error          // the first invalid option
	placed   []placedOption // options of this call that apply only in some places

	// Cluster settings: of Dial, and of Create on a cluster runtime.
	cluster      string
	creds        string
	node         string
	placementKey string
}

// collect applies opts to a copy of base (a runtime's defaults, for
// Create); placed then lists only what opts placed.
func collect(base options, opts []Option) options {
	base.placed = nil
	for _, o := range opts {
		if o != nil {
			o(&base)
		}
	}
	return base
}

// WithStdout sends the interpreter's print and io.write output to w. The
// default is the host's os.Stdout, looked up at each write.
func WithStdout(w io.Writer) Option { return func(o *options) { o.stdout = w } }

// WithStdlib opens the full Lua standard library (io, os, package, debug)
// in the interpreter: for trusted scripts only.
func WithStdlib() Option { return func(o *options) { o.stdlib = true } }

// WithMemoryLimit limits the interpreter's memory. Past it, Lua raises a
// MemoryError that pcall can catch; a call that ends still holding more
// than the limit fails with that MemoryError, and so does each later call
// until the memory is let go; a worker that still grows is ended by the
// kernel. Either way the error matches ErrMemoryLimit.
func WithMemoryLimit(bytes int64) Option {
	return func(o *options) { o.limits.MemoryBytes = bytes }
}

// WithCPULimit limits the CPU time of each call; past it the call fails
// with an error matching ErrCPULimit.
func WithCPULimit(perCall time.Duration) Option {
	return func(o *options) { o.limits.CPUPerCall = perCall }
}

// WithCPUTotalLimit limits the CPU time the interpreter may use over its
// whole life. Past it a call fails with ErrCPULimit; a worker that goes on
// regardless is ended by the kernel (RLIMIT_CPU), with a *WorkerExitError
// that also matches ErrCPULimit.
func WithCPUTotalLimit(total time.Duration) Option {
	return func(o *options) { o.limits.CPUTotal = total }
}

// WithCallTimeout sets the default wall-clock deadline of every call; past
// it the call fails with an error matching context.DeadlineExceeded.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) { o.limits.CallTimeout = d }
}

// WithOutputLimit limits the stdout bytes of each call; no more than that
// reaches the writer, and the call fails with an error matching
// ErrOutputLimit.
func WithOutputLimit(bytes int64) Option {
	return func(o *options) { o.limits.OutputBytes = bytes }
}

// WithCreateLimit caps the interpreters Lua code may create in this one,
// and in those created from it, alive at once: past it create() raises an
// InterpreterError. 0 means the default (64), a negative n no cap.
// Interpreters created from Lua inherit their creator's limits, library and
// writer.
func WithCreateLimit(n int) Option {
	return func(o *options) { o.limits.Created = n }
}

// WithToken sets the token Dial presents to a daemon listening on TCP, or
// to the NATS servers of a cluster.
func WithToken(token string) Option {
	return optionAt("WithToken", onDial, func(o *options) { o.token = token })
}

// WithTLS sets the TLS configuration Dial uses for TCP, or for the NATS
// connection to a cluster.
func WithTLS(cfg *tls.Config) Option {
	return optionAt("WithTLS", onDial, func(o *options) { o.tls = cfg })
}

// WithCredentials makes Dial to a cluster present a NATS credentials file
// (a user JWT and its nkey seed).
func WithCredentials(file string) Option {
	return optionAt("WithCredentials", onDial, func(o *options) { o.creds = file })
}

// WithCluster names the cluster Dial joins, for clusters that share one
// NATS deployment; the default is "subinterp".
func WithCluster(name string) Option {
	return optionAt("WithCluster", onDial, func(o *options) { o.cluster = name })
}

// WithNode makes Create place the interpreter on the named node of a
// cluster runtime. A node that is not live, or any node on a runtime that
// is not a cluster, is ErrInvalidArgument.
func WithNode(name string) Option {
	return optionAt("WithNode", onCreate, func(o *options) { o.node = name })
}

// WithPlacementKey makes Create on a cluster runtime place the interpreter
// by rendezvous hashing of key over the live nodes: the same key goes to
// the same node while the set of nodes stays the same, and when a node
// joins or leaves only the keys that hash to it move. Other runtimes
// ignore it.
func WithPlacementKey(key string) Option {
	return optionAt("WithPlacementKey", onCreate, func(o *options) { o.placementKey = key })
}

// hostStdout writes to whatever os.Stdout is at the time of the write, so
// output follows a program (or a test) that redirects os.Stdout.
type hostStdout struct{}

func (hostStdout) Write(p []byte) (int, error) { return os.Stdout.Write(p) }

// RestartPolicy makes an interpreter survive the death of its worker
// process: a new worker takes the same ID, InitScript runs in it, and the
// PrepareMain bindings made so far are replayed in order. Globals set by
// Exec or Call are lost with the worker. The call that was running when the
// worker died still fails with its *WorkerExitError; calls made while the
// new worker starts fail with ErrAlreadyRunning, and IsRunning reports
// true.
type RestartPolicy struct {
	// MaxRestarts bounds the restarts within Period; past it the
	// interpreter is gone, as without a policy.
	MaxRestarts int
	// Period is the window MaxRestarts counts in; 0 means forever.
	Period time.Duration
	// InitScript runs in every worker of the interpreter, the first too.
	InitScript string
	// Backoff is the wait before a restart, doubling after each failed
	// attempt up to MaxBackoff (defaults 100 ms and 10 s).
	Backoff, MaxBackoff time.Duration
	// OnRestart, when set, is told of every attempt. It must not block
	// for long.
	OnRestart func(RestartEvent)
}

// RestartEvent reports one restart attempt.
type RestartEvent struct {
	InterpreterID int64
	// Attempt is 1 for the first restart within the policy's window.
	Attempt int
	// Cause is how the previous worker ended: a *WorkerExitError.
	Cause error
	// Err says why the attempt failed; nil when the new worker is up.
	Err error
	// GaveUp is set when no attempt is left and the interpreter is gone.
	GaveUp bool
}

// WithRestart gives the interpreter a restart policy.
func WithRestart(p RestartPolicy) Option {
	return func(o *options) {
		sp := &supervisor.RestartPolicy{
			MaxRestarts: p.MaxRestarts,
			Period:      p.Period,
			InitScript:  p.InitScript,
			Backoff:     p.Backoff,
			MaxBackoff:  p.MaxBackoff,
		}
		if p.OnRestart != nil {
			sp.OnRestart = func(ev supervisor.RestartEvent) {
				pe := RestartEvent{InterpreterID: ev.InterpreterID, Attempt: ev.Attempt, Err: ev.Err, GaveUp: ev.GaveUp}
				if ev.Cause != nil {
					pe.Cause = fromWire(ev.Cause)
				}
				p.OnRestart(pe)
			}
		}
		o.restart = sp
	}
}

// WithWarmSpares keeps n worker processes started ahead of need, so Create
// claims one instead of launching a process (a runtime option: give it to
// New).
func WithWarmSpares(n int) Option {
	return optionAt("WithWarmSpares", onNew, func(o *options) { o.spares = n })
}

// WarmSpares is the number of spare workers ready for Create to claim; 0
// for a runtime without them, or a remote one.
func (rt *Runtime) WarmSpares() int {
	b, err := rt.backend()
	if err != nil {
		return 0
	}
	if s, ok := b.(interface{ SparesReady() int }); ok {
		return s.SparesReady()
	}
	return 0
}
