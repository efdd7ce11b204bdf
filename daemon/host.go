package daemon

import (
	"context"
	"time"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// hosting is what a client gives the interpreter it creates: its host
// functions, which run in the client, called back over this connection;
// its modules; and whether the interpreter is confined.
func (c *conn) hosting(p *protocol.CreateParams) supervisor.Hosting {
	// The functions forward the call to the client, and stop waiting for
	// it once the call's context ends (callClient): prompt.
	h := supervisor.Hosting{Modules: p.Modules, Confined: p.Confined, Prompt: true}
	if len(p.HostFuncs) > 0 {
		h.Funcs = make(map[string]supervisor.HostFunc, len(p.HostFuncs))
		refs := make([]int64, len(p.HostFuncs))
		for i, f := range p.HostFuncs {
			h.Funcs[f.Name] = c.hostFunc(f)
			refs[i] = f.Ref
		}
		// The client keeps its functions registered until told that no
		// interpreter holds them; a client that is gone needs no telling.
		h.Released = func() { _ = c.notify(protocol.NotifyHostRelease, &protocol.HostReleaseParams{Refs: refs}) }
	}
	return h
}

// hostFunc forwards a script's call of a client's host function to the
// client. The queues in the arguments come with the host references the
// supervisor took; they are this connection's now, as in any value it
// receives. The client took one reference on this connection for each
// queue in the results; those pass to the interpreter. A client that is
// gone fails the call with a HostError: the interpreter lives on.
func (c *conn) hostFunc(f protocol.HostFuncRef) supervisor.HostFunc {
	return func(ctx context.Context, args []byte) ([]byte, error) {
		c.credit(protocol.QueueIDs(args))
		p := &protocol.HostCallParams{Name: f.Name, Args: args, Ref: f.Ref}
		if dl, ok := ctx.Deadline(); ok {
			p.TimeoutNs = int64(max(time.Until(dl), 1))
		}
		res, err := c.callClient(ctx, p)
		if err != nil {
			e := protocol.AsError(err)
			if e.Code == protocol.CodeClosed {
				return nil, protocol.Errorf(protocol.CodeHostError, "host function %s: the client that gave it is gone", f.Name)
			}
			return nil, e
		}
		c.debit(protocol.QueueIDs(res))
		return res, nil
	}
}

// callClient makes the host call on the client. A call past its deadline
// is not cancelled at once: the client's context has the same deadline, and
// its function sees it pass rather than a cancellation; one that does not
// answer within cancelGrace is cancelled.
func (c *conn) callClient(ctx context.Context, p *protocol.HostCallParams) ([]byte, error) {
	if st, ok := ctx.Value(streamKey{}).(*stream); ok && st.c == c {
		// The call came on one of this client's streams, whose reader
		// is the goroutine waiting for it: ask there.
		return st.callClient(ctx, p)
	}
	if c.call != nil {
		return c.call(ctx, protocol.MethodHostCall, p)
	}
	call, err := c.peer.Go(protocol.MethodHostCall, p)
	if err != nil {
		return nil, err
	}
	select {
	case <-call.Done:
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			t := time.NewTimer(cancelGrace)
			select {
			case <-call.Done:
			case <-t.C:
			}
			t.Stop()
		}
		c.peer.Cancel(call, ctx.Err())
		<-call.Done
	}
	return call.Result, call.Err
}

// cancelGrace is how long a host call past its deadline is left to the
// client's own deadline before it is cancelled.
const cancelGrace = time.Second

// debit takes references the connection holds off its books without
// releasing them: whoever they pass to releases them.
func (c *conn) debit(ids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		switch n := c.refs[id]; {
		case n > 1:
			c.refs[id] = n - 1
		case n == 1:
			delete(c.refs, id)
		}
	}
}
