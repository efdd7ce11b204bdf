package cluster

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/subinterp/subinterp/protocol"
)

// putters is what a Queues knows of the interpreters that put items.
type putters struct {
	mu     sync.Mutex
	gone   map[int64]bool // putters known gone: IDs are never reused, so for good
	self   string         // the node this process is, if it is one
	exists func(id int64) bool
}

// SetLocal tells qs that this process is node self, where exists says
// whether an interpreter lives: its own putters are asked about there,
// not over NATS. A node's gets are Takes (see ReceiveToHand).
func (qs *Queues) SetLocal(self string, exists func(id int64) bool) {
	qs.putters.mu.Lock()
	qs.putters.self, qs.putters.exists = self, exists
	qs.putters.mu.Unlock()
	// The node's claims name its claimant subject: subscribed now, it has
	// reached every NATS server long before another getter asks there.
	_, _ = qs.claimantSubject()
}

// Receive takes the item at the head of queue id as Get does, with the
// unbound modes applied: an item whose putter is gone is skipped
// (UnboundRemove), refused with CodeItemDestroyed (UnboundError), or
// given as unbound (UnboundReplace). A putter is gone when its node says
// it has no such interpreter, or when its node does not answer: it is
// lost, and an interpreter of a lost node is gone too (the node fences
// itself). The modes are applied when an item is taken, so until then a
// gone putter's UnboundRemove items still count in the queue's size.
// Receive is for a getter in this process, as Get is.
func (qs *Queues) Receive(ctx context.Context, id int64, block bool) (data []byte, unbound bool, err error) {
	data, unbound, _, err = qs.receive(ctx, id, block, false)
	return data, unbound, err
}

// ReceiveToHand receives as Receive does for a getter this process hands
// the item to, which is settled as Take's is.
func (qs *Queues) ReceiveToHand(ctx context.Context, id int64, block bool) (data []byte, unbound bool, settle func(handed bool), err error) {
	return qs.receive(ctx, id, block, true)
}

func (qs *Queues) receive(ctx context.Context, id int64, block, hand bool) ([]byte, bool, func(bool), error) {
	for {
		it, settle, err := qs.get(ctx, id, block, hand)
		if err != nil {
			return nil, false, nil, err
		}
		if it.Putter == 0 || !qs.gone(ctx, it.PutterNode, it.Putter) {
			return it.Data, false, settle, nil
		}
		mode := it.Unbound
		if mode == 0 {
			c, _, err := qs.Info(context.WithoutCancel(ctx), id)
			if err != nil {
				settle(false)
				return nil, false, nil, err
			}
			mode = c.Unbound
		}
		switch mode {
		case protocol.UnboundRemove:
			settle(true)
			continue
		case protocol.UnboundError:
			settle(true)
			return nil, false, nil, protocol.Errorf(protocol.CodeItemDestroyed, "item's interpreter %d was destroyed", it.Putter)
		}
		return nil, true, settle, nil
	}
}

// ask requests subject with data and returns the answer, or lost when
// nobody answers within LostAfter (or nobody listens there), as clients
// count a node lost. Any other failure gives neither.
func (qs *Queues) ask(ctx context.Context, subject, data string) (answer string, lost bool) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LostAfter)
	defer cancel()
	r, err := qs.nc.RequestWithContext(actx, subject, []byte(data))
	switch {
	case err == nil:
		return string(r.Data), false
	case errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return "", true
	}
	return "", false
}

// gone reports whether interpreter id of node has ended.
func (qs *Queues) gone(ctx context.Context, node string, id int64) bool {
	p := &qs.putters
	p.mu.Lock()
	known, local, exists := p.gone[id], node == p.self && p.exists != nil, p.exists
	p.mu.Unlock()
	if known {
		return true
	}
	var gone bool
	if local {
		gone = !exists(id)
	} else {
		ans, lost := qs.ask(ctx, qs.subj.Alive(node), strconv.FormatInt(id, 10))
		gone = lost || ans == "0"
	}
	if gone {
		p.mu.Lock()
		if p.gone == nil {
			p.gone = make(map[int64]bool)
		}
		p.gone[id] = true
		p.mu.Unlock()
	}
	return gone
}
