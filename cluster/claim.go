package cluster

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// A claim's value is the claiming get's token, a space, and the claimant
// subject of the process that made it when that process hands the item
// on (Take) rather than returning it (Get): a Take's item may still be on
// its way, and only its process can say whether it was given back.

// claimant is what this process answers on its claimant subject.
type claimant struct {
	once    sync.Once
	subject string // "" until subscribed
	err     error

	mu        sync.Mutex
	givenBack map[string]time.Time // claims given back, by key, with when
	gone      map[string]bool      // other processes' claimant subjects found gone, for good
}

// claimantSubject returns this process's claimant subject, subscribing to
// it the first time. It is subscribed before the first claim names it: a
// claim whose subject nobody answers counts as its process's death.
func (qs *Queues) claimantSubject() (string, error) {
	c := &qs.claimant
	c.once.Do(func() {
		subject := qs.subj.Claimant(nuid.Next())
		if _, c.err = qs.nc.Subscribe(subject, qs.answerClaimant); c.err == nil {
			c.err = qs.nc.Flush()
		}
		if c.err == nil {
			c.mu.Lock()
			c.subject = subject
			c.mu.Unlock()
		}
	})
	return c.subject, c.err
}

// ownSubject is this process's claimant subject, "" before it has one.
func (qs *Queues) ownSubject() string {
	c := &qs.claimant
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subject
}

// answerClaimant tells the get that found one of this process's claims
// (its key) whether the item is still this process's: "0" once it was
// given back, "1" otherwise.
func (qs *Queues) answerClaimant(m *nats.Msg) {
	ans := "1"
	if qs.gaveBack(string(m.Data)) {
		ans = "0"
	}
	_ = m.Respond([]byte(ans))
}

func (qs *Queues) gaveBack(key string) bool {
	c := &qs.claimant
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.givenBack[key]
	return ok
}

// giveBack records that the item of claim key is no longer this
// process's, forgetting what was given back longer ago than a claim lives.
func (qs *Queues) giveBack(key string) {
	c := &qs.claimant
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, t := range c.givenBack {
		if now.Sub(t) > claimTTL {
			delete(c.givenBack, k)
		}
	}
	if c.givenBack == nil {
		c.givenBack = make(map[string]time.Time)
	}
	c.givenBack[key] = now
}

// claim writes key into the claims bucket with a token of this get's
// own and subject (the claimant subject, or "" for a Get), unless some
// live get holds it; it reports whether the claim is this get's, and its
// revision. A claim whose process is gone, or which its process gave
// back, is taken over. A write whose answer was lost is settled by
// reading the key back. A claim not settled within claimWait counts as
// this get's: the item is then handed out twice rather than dropped.
func (qs *Queues) claim(key, subject string) (bool, uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), claimWait)
	defer cancel()
	mine := []byte(nuid.Next() + " " + subject)
	for {
		tctx, tcancel := context.WithTimeout(ctx, putTry)
		owned, rev, err := qs.tryClaim(tctx, key, mine)
		tcancel()
		if err == nil {
			return owned, rev
		}
		if errors.Is(err, nats.ErrConnectionClosed) || !pause(ctx) {
			return true, 0
		}
	}
}

func (qs *Queues) tryClaim(ctx context.Context, key string, mine []byte) (bool, uint64, error) {
	kv, err := qs.claims(ctx)
	if err != nil {
		return false, 0, err
	}
	rev, err := kv.Create(ctx, key, mine)
	if err == nil {
		return true, rev, nil
	}
	for errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, key); err != nil {
			break
		}
		if bytes.Equal(e.Value(), mine) {
			return true, e.Revision(), nil
		}
		if qs.holds(key, e.Value()) {
			return false, 0, nil
		}
		// Another get whose item went nowhere: unless a third get takes
		// the claim over first, the item is this one's.
		if rev, err = kv.Update(ctx, key, mine, e.Revision()); err == nil {
			return true, rev, nil
		}
	}
	return false, 0, err
}

// holds reports whether the get that wrote claim value (of key) still
// holds its item: a Get always does, having returned it; a Take's
// process is asked, and one that does not answer within LostAfter is
// counted gone, as a node is.
func (qs *Queues) holds(key string, value []byte) bool {
	_, subject, _ := strings.Cut(string(value), " ")
	switch {
	case !strings.HasPrefix(subject, qs.subj.Claimant("")):
		return true // a Get's
	case subject == qs.ownSubject():
		return !qs.gaveBack(key)
	}
	c := &qs.claimant
	c.mu.Lock()
	gone := c.gone[subject]
	c.mu.Unlock()
	if gone {
		return false
	}
	ans, lost := qs.ask(context.Background(), subject, key)
	if lost {
		// Remembered, so that a retry of the claim need not wait again:
		// a claimant subject is its process's alone.
		c.mu.Lock()
		if c.gone == nil {
			c.gone = make(map[string]bool)
		}
		c.gone[subject] = true
		c.mu.Unlock()
		return false
	}
	return ans != "0"
}

// unclaim deletes this process's claim key at revision rev (0: no
// claim), so that the next get of its item need not ask whether it was
// given back.
func (qs *Queues) unclaim(key string, rev uint64) {
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), putTry)
	defer cancel()
	if kv, err := qs.claims(ctx); err == nil {
		_ = kv.Delete(ctx, key, jetstream.LastRevision(rev))
	}
}

// claims returns the cluster's claims bucket, making it the first time.
// Its keys live claimTTL, far longer than any redelivery of an item.
func (qs *Queues) claims(ctx context.Context) (jetstream.KeyValue, error) {
	qs.claimsMu.Lock()
	defer qs.claimsMu.Unlock()
	if qs.claimsKV != nil {
		return qs.claimsKV, nil
	}
	kv, err := qs.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: qs.subj.Cluster + "_claims", TTL: claimTTL,
		Storage: jetstream.FileStorage, Replicas: qs.replicas,
	})
	if err != nil {
		return nil, err
	}
	qs.claimsKV = kv
	return kv, nil
}
