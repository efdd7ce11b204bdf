package baseline

import (
	"errors"
	"fmt"
	"net/rpc"
	"os"
	"os/exec"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// handshake is shared by both sides; the cookie only guards against running
// the child role by accident.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "SUBINTERP_BASELINE_PLUGIN",
	MagicCookieValue: "echo",
}

const pluginName = "echo"

var pluginSet = plugin.PluginSet{pluginName: echoPlugin{}}

// Plugin is a stock hashicorp/go-plugin net/rpc (gob over yamux) plugin in a
// child process, exposing Echo. It is configured as a careful user would
// configure it for speed: net/rpc only, no AutoMTLS, no checksum, and
// loggers on both sides that drop everything, so neither launch nor call
// times include log parsing.
//
// Plugin is safe for concurrent use: like any go-plugin client, all callers
// share the plugin's one net/rpc connection, which multiplexes their calls.
type Plugin struct {
	client   *plugin.Client
	cmd      *exec.Cmd
	echo     *echoClient
	lifeline *os.File      // the child exits when this write end closes
	released chan struct{} // lets the thread that forked the child end
	dir      string        // holds go-plugin's socket; removed by Close

	closeOnce sync.Once
	closeErr  error
}

// StartPlugin launches the plugin, completes go-plugin's handshake and
// dispenses the echo plugin.
func StartPlugin() (*Plugin, error) {
	exe, err := childCommandPath()
	if err != nil {
		return nil, err
	}
	// go-plugin would otherwise put its socket in TMPDIR, where a killed
	// child leaves it behind.
	dir, err := os.MkdirTemp("", "sib-")
	if err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	defer lifeR.Close()

	cmd := exec.Command(exe, pluginRole)
	cmd.Env = append(childEnv(pluginRole), plugin.EnvUnixSocketDir+"="+dir)
	cmd.ExtraFiles = []*os.File{lifeR}
	setParentDeathSignal(cmd)

	p := &Plugin{
		client: plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  handshake,
			Plugins:          pluginSet,
			Cmd:              cmd,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
			Logger:           hclog.NewNullLogger(),
			// childEnv already holds the parent's environment; letting
			// go-plugin append it again would override the role.
			SkipHostEnv:  true,
			StartTimeout: startTimeout,
		}),
		cmd:      cmd,
		lifeline: lifeW,
		released: make(chan struct{}),
		dir:      dir,
	}
	started := false
	defer func() {
		if !started {
			_ = p.Close()
		}
	}()

	var proto plugin.ClientProtocol
	if err := startOnLockedThread(func() (err error) {
		proto, err = p.client.Client()
		return err
	}, p.released); err != nil {
		return nil, fmt.Errorf("baseline: starting plugin child: %w", err)
	}
	raw, err := proto.Dispense(pluginName)
	if err != nil {
		return nil, fmt.Errorf("baseline: dispensing plugin: %w", err)
	}
	p.echo = raw.(*echoClient)
	started = true
	return p, nil
}

// Echo makes one net/rpc round trip of v.
func (p *Plugin) Echo(v int64) (int64, error) {
	var got int64
	err := p.echo.c.Call("Plugin.Echo", v, &got)
	return got, err
}

// Close stops the child with go-plugin's Kill (a graceful quit, then SIGKILL
// after 2 s) and returns once the child has been reaped. It is safe to call
// more than once.
//
// In about one Kill in a hundred, go-plugin's yamux session logs "[ERR]
// yamux: Failed to write header: ... broken pipe" (or "use of closed network
// connection") straight to os.Stderr: the host still closes its streams
// while the child, told to quit, is already exiting. The message is harmless
// and cannot be routed elsewhere, but it can split a benchmark result line.
func (p *Plugin) Close() error {
	p.closeOnce.Do(func() {
		p.client.Kill()
		if p.cmd.Process != nil && !p.client.Exited() {
			p.closeErr = errors.New("baseline: plugin child still running after Kill")
		}
		_ = p.lifeline.Close()
		close(p.released)
		if err := os.RemoveAll(p.dir); err != nil && p.closeErr == nil {
			p.closeErr = err
		}
	})
	return p.closeErr
}

// LaunchPlugin performs one cold launch as a plugin host would: start,
// handshake, Dispense, a first Echo, then Kill. It returns after the child
// has been reaped, so timing it gives the full cost of a short-lived plugin.
func LaunchPlugin() error {
	p, err := StartPlugin()
	if err != nil {
		return err
	}
	got, err := p.Echo(startProbe)
	if err == nil && got != startProbe {
		err = fmt.Errorf("baseline: plugin echoed %d, want %d", got, startProbe)
	}
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	return err
}

// echoPlugin is the go-plugin glue for the echo service.
type echoPlugin struct{}

func (echoPlugin) Server(*plugin.MuxBroker) (any, error) { return echoServer{}, nil }

func (echoPlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return &echoClient{c: c}, nil
}

// echoServer is served by net/rpc in the child.
type echoServer struct{}

// Echo returns its argument.
func (echoServer) Echo(v int64, got *int64) error {
	*got = v
	return nil
}

type echoClient struct{ c *rpc.Client }
