package node

import (
	"context"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// Requests reach the goroutine that serves them in one hand-off: nats.go
// puts each on a channel that idle goroutines of the node wait on. (Its
// handler subscriptions take two: from the connection's reader to the
// subscription's goroutine, and from there to a goroutine of the
// request's own, since one request must never wait for another's.) The
// last idle goroutine to take a request starts another first, so one is
// always waiting; idle ones beyond maxIdle end.
const (
	// pendingRequests is how many requests may wait for a goroutine
	// before NATS drops more (a slow consumer), as for a handler
	// subscription, whose limit is larger but counted the same way.
	pendingRequests = 1 << 16
	maxIdle         = 64
)

type dispatcher struct {
	ch     chan *nats.Msg
	idle   atomic.Int32
	handle func(*nats.Msg)
	done   <-chan struct{}
}

// subscribeDispatched serves subject's messages with handle, each on an
// idle goroutine, until ctx ends.
func subscribeDispatched(ctx context.Context, nc *nats.Conn, subject string, handle func(*nats.Msg)) (*nats.Subscription, error) {
	d := &dispatcher{ch: make(chan *nats.Msg, pendingRequests), handle: handle, done: ctx.Done()}
	s, err := nc.ChanSubscribe(subject, d.ch)
	if err != nil {
		return nil, err
	}
	d.start()
	return s, nil
}

func (d *dispatcher) start() {
	d.idle.Add(1)
	go d.loop()
}

func (d *dispatcher) loop() {
	for {
		select {
		case m := <-d.ch:
			if d.idle.Add(-1) == 0 {
				d.start()
			}
			d.handle(m)
			if d.idle.Add(1) > maxIdle {
				d.idle.Add(-1)
				return
			}
		case <-d.done:
			return
		}
	}
}
