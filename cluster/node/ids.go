package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/subinterp/subinterp/cluster"
)

// blockSize is how many IDs a node takes at a time. One JetStream write per
// block keeps creation off the JetStream path almost always, and a node
// that restarts wastes at most one block.
const blockSize = 1024

// maxID is the largest ID: every ID must be exact as a Lua number.
const maxID = 1<<53 - 1

// idTry bounds one attempt at the counter: JetStream answers nothing
// while a cluster has no leader, so each try has its own deadline.
const idTry = 2 * time.Second

// ids hands out interpreter and queue IDs from blocks taken from the
// cluster's counter: a key-value entry holding the last ID given out to
// any node, advanced by compare-and-set on its revision (Create for the
// first block, Update with the revision read for each later one). Two
// nodes that race for a block both read revision r; one Update wins, the
// other fails with a revision mismatch and reads again. So no two blocks
// overlap and no ID is ever given twice, across restarts too: the counter
// outlives every node.
type ids struct {
	js       jetstream.JetStream
	bucket   string
	replicas int

	mu        sync.Mutex
	kv        jetstream.KeyValue
	next, end int64 // the block in hand: next to give, last of it
}

const counterKey = "next"

// takeWait bounds the claim of a block when the caller set no deadline.
const takeWait = 30 * time.Second

// Next gives the next ID, claiming a new block when the one in hand is
// used up.
func (a *ids) Next(ctx context.Context) (int64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, takeWait)
		defer cancel()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next == 0 || a.next > a.end {
		if err := a.take(ctx); err != nil {
			return 0, err
		}
	}
	id := a.next
	a.next++
	return id, nil
}

// take claims the next block; a.mu is held.
func (a *ids) take(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		first, err := a.try(ctx)
		if err == nil {
			a.next, a.end = first, first+blockSize-1
			return nil
		}
		if !errors.Is(err, errConflict) && !unready(err) {
			return err
		}
		// A conflict: another node took a block first; again at once.
		// JetStream not ready (a cluster still electing its leaders, or
		// re-electing them after a server was lost): again shortly.
		if !errors.Is(err, errConflict) {
			t := time.NewTimer(idRetry)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
		}
	}
}

// idRetry is the pause before asking a JetStream that was not ready again.
const idRetry = 100 * time.Millisecond

// unready reports whether err says JetStream could not answer yet (see
// cluster.Unready).
func unready(err error) bool { return cluster.Unready(err) }

var errConflict = errors.New("another node took the block")

// try makes one attempt at claiming a block and returns its first ID.
func (a *ids) try(ctx context.Context) (int64, error) {
	tctx, cancel := context.WithTimeout(ctx, idTry)
	defer cancel()
	if a.kv == nil {
		kv, err := a.js.CreateOrUpdateKeyValue(tctx, jetstream.KeyValueConfig{
			Bucket: a.bucket, Description: "subinterp: the last interpreter or queue ID given out",
			History: 1, Storage: jetstream.FileStorage, Replicas: a.replicas,
		})
		if err != nil {
			return 0, fmt.Errorf("the cluster's ID counter: %w", err)
		}
		a.kv = kv
	}
	e, err := a.kv.Get(tctx, counterKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if _, err := a.kv.Create(tctx, counterKey, encode(blockSize)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return 0, errConflict
			}
			return 0, fmt.Errorf("the cluster's ID counter: %w", err)
		}
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("the cluster's ID counter: %w", err)
	}
	last, ok := decode(e.Value())
	if !ok {
		return 0, fmt.Errorf("the cluster's ID counter holds %d bytes, not a number", len(e.Value()))
	}
	if last > maxID-blockSize {
		return 0, fmt.Errorf("the cluster has given out every ID up to %d", last)
	}
	if _, err := a.kv.Update(tctx, counterKey, encode(last+blockSize), e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, errConflict
		}
		return 0, fmt.Errorf("the cluster's ID counter: %w", err)
	}
	return last + 1, nil
}

func encode(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

func decode(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}
