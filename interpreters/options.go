package interpreters

import (
	"crypto/tls"
	"io"
	"os"
	"time"

	"github.com/subinterp/subinterp/supervisor"
)

// Option configures Create, or a whole Runtime when given to New or Dial:
// there it sets the defaults of every interpreter the runtime creates.
type Option func(*options)

type options struct {
	stdout io.Writer
	stdlib bool
	limits supervisor.Limits
	token  string
	tls    *tls.Config
}

func collect(base options, opts []Option) options {
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
// MemoryError that pcall can catch; a worker that still grows is ended by
// the kernel. Either way the error matches ErrMemoryLimit.
func WithMemoryLimit(bytes int64) Option {
	return func(o *options) { o.limits.MemoryBytes = bytes }
}

// WithCPULimit limits the CPU time of each call; past it the call fails
// with an error matching ErrCPULimit.
func WithCPULimit(perCall time.Duration) Option {
	return func(o *options) { o.limits.CPUPerCall = perCall }
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

// WithToken sets the token Dial presents to a daemon listening on TCP.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS sets the TLS configuration Dial uses for TCP.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// hostStdout writes to whatever os.Stdout is at the time of the write, so
// output follows a program (or a test) that redirects os.Stdout.
type hostStdout struct{}

func (hostStdout) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
