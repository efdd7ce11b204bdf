package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/subinterp/subinterp/protocol"
)

// Headers an item of a cluster-wide queue carries beside its msgpack value.
const (
	HdrPutter     = "Subinterp-Putter"      // the interpreter that put it; "0" is a client
	HdrPutterNode = "Subinterp-Putter-Node" // the node of that interpreter; "" for a client
	HdrUnbound    = "Subinterp-Unbound"     // its protocol.UnboundMode
)

// The consumer every getter of a queue shares, and how long an item
// handed to a getter that never acknowledges it (its node died in the
// get) stays out before JetStream hands it to the next getter.
const (
	getters     = "getters"
	itemAckWait = 10 * time.Second
	// getRound bounds one pull request; a blocking get asks again, so a
	// dead server is noticed by the pull's heartbeat (missed twice), not
	// by this.
	getRound     = 30 * time.Second
	getHeartbeat = 2 * time.Second
	// claimWait bounds how long a get tries to record its claim on an
	// item while JetStream fails over (seconds); a claim it cannot settle
	// in that time it counts as its own (see Queues).
	claimWait = time.Minute
	claimTTL  = time.Hour
	// retryPause spaces the retries of a put or get while JetStream has
	// no leader for the queue (a failover takes seconds).
	retryPause = 100 * time.Millisecond
	// putTry bounds one try of a put: an answer takes milliseconds, a
	// failover seconds.
	putTry = 2 * time.Second
	// fullRecheck is how long a put on a full queue waits for a get's
	// notice before it tries again anyway.
	fullRecheck = time.Second
	// unboundMeta is the stream metadata key of a queue's default mode,
	// maxsizeMeta that of its maxsize as given (a negative one is kept,
	// as a local queue keeps it).
	unboundMeta = "subinterp_unbound"
	maxsizeMeta = "subinterp_maxsize"
)

// QueueItem is one item of a cluster-wide queue.
type QueueItem struct {
	Data       []byte // the item's msgpack value
	Putter     int64  // the interpreter that put it; 0 is a client
	PutterNode string // the node of Putter; "" for a client
	Unbound    protocol.UnboundMode
}

// QueueConfig describes a cluster-wide queue.
type QueueConfig struct {
	MaxSize int // <= 0: unbounded
	Unbound protocol.UnboundMode
}

// Queues is where a cluster keeps its queues: one JetStream work-queue
// stream per queue, named C_q_ID with the one subject C.q.ID, read
// through one durable consumer every getter shares. A stream per queue,
// rather than a subject per queue in one stream, because maxsize is
// then the stream's MaxMsgs with DiscardNew (JetStream refuses the put
// of a full queue itself), a queue's size is its stream's message count,
// and deleting a queue deletes its stream; the price is one replicated
// log per queue. The cluster never deletes one itself (see the package
// doc).
//
// The consumer allows one item out at a time (MaxAckPending 1), so items
// leave in order even across competing getters, and a getter waiting
// holds a pull request that JetStream answers when an item is stored —
// no polling. An item handed out and never acknowledged (its getter's
// process died) goes to the next getter after itemAckWait, so an item is
// never dropped. A Get acknowledges its item before it returns it; a Take
// (a node's get for one of its interpreters) only once the item has
// reached the interpreter, so a node lost in the middle of a get leaves
// its item to the next getter. A get whose wait ends while its pull
// request is still out hands back (NAKs) an item that request brings, so
// the item goes to the next getter at once rather than after itemAckWait.
//
// The consumer's acknowledgements alone cannot say which getter took an
// item across a failover: a new consumer leader that never heard of a
// delivery hands the item out again, and then confirms both getters'
// acknowledgements. So with more than one replica every get also claims
// its item in the cluster's claims bucket (a JetStream key-value bucket,
// keyed by queue, stream sequence and store time), a write only one getter
// can make; a getter that finds the claim another's acknowledges the item
// and takes the next one — unless the claim was a Take's whose process is
// gone or gave the item back (it is asked on its claimant subject), which
// the getter then takes over. A Get sends its claim and acknowledgement
// together, so it costs one replicated round trip; a Take claims first and
// acknowledges after, two. An item is handed out twice only when its
// claim could not be settled within claimWait (no JetStream for a minute),
// or when a Take's process dies after its getter had the item and before
// the acknowledgement — and then that getter died with it.
//
// A put into a full queue that may wait listens on C.q.ID.taken, where
// every get announces that it took an item, and tries again then, or
// after fullRecheck: the subscription reaches the other servers of a
// NATS cluster asynchronously, so the first notice can pass unheard.
type Queues struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	subj     Subjects
	replicas int

	// The putters known gone, and how this process tells whether one of
	// its own node's interpreters lives (see Receive).
	putters putters

	claimsMu sync.Mutex
	claimsKV jetstream.KeyValue // nil until the first claim
	claimant claimant

	consMu sync.Mutex
	cons   map[int64]jetstream.Consumer // by queue, as a get found it
}

// NewQueues keeps the queues of cluster in the JetStream nc reaches, each
// stored on replicas servers (0 means 1).
func NewQueues(nc *nats.Conn, cluster string, replicas int) (*Queues, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if replicas <= 0 {
		replicas = 1
	}
	return &Queues{nc: nc, js: js, subj: Subjects{Cluster: cluster}, replicas: replicas, cons: map[int64]jetstream.Consumer{}}, nil
}

func (qs *Queues) stream(id int64) string { return qs.subj.Cluster + "_q_" + strconv.FormatInt(id, 10) }
func (qs *Queues) subject(id int64) string {
	return qs.subj.Cluster + ".q." + strconv.FormatInt(id, 10)
}
func (qs *Queues) taken(id int64) string { return qs.subject(id) + ".taken" }

// Create makes queue id.
func (qs *Queues) Create(ctx context.Context, id int64, c QueueConfig) error {
	if !c.Unbound.Valid() {
		return protocol.Errorf(protocol.CodeInvalidArgument, "unbound mode %d", c.Unbound)
	}
	maxMsgs := int64(-1)
	if c.MaxSize > 0 {
		maxMsgs = int64(c.MaxSize)
	}
	meta := map[string]string{unboundMeta: strconv.Itoa(int(c.Unbound)), maxsizeMeta: strconv.Itoa(c.MaxSize)}
	cfg := jetstream.StreamConfig{
		Name: qs.stream(id), Subjects: []string{qs.subject(id)},
		Retention: jetstream.WorkQueuePolicy, MaxMsgs: maxMsgs, Discard: jetstream.DiscardNew,
		Storage: jetstream.FileStorage, Replicas: qs.replicas, Metadata: meta,
	}
	for {
		// CreateOrUpdate: a try whose answer was lost may have made it.
		tctx, cancel := context.WithTimeout(ctx, putTry)
		st, err := qs.js.CreateOrUpdateStream(tctx, cfg)
		if err == nil {
			_, err = st.CreateOrUpdateConsumer(tctx, jetstream.ConsumerConfig{
				Durable: getters, AckPolicy: jetstream.AckExplicitPolicy, AckWait: itemAckWait,
				MaxAckPending: 1, MaxDeliver: -1, MaxWaiting: 1 << 16, Metadata: meta,
			})
		}
		cancel()
		switch {
		case err == nil:
			return nil
		case !Unready(err) || !pause(ctx):
			_ = qs.js.DeleteStream(context.WithoutCancel(ctx), qs.stream(id))
			return unavailable("create queue %d", id, err)
		}
	}
}

// Unready reports whether err says JetStream could not answer yet rather
// than that the request was wrong: no answer in time, no responder, an
// API error with status 503 (a stream whose leader is being elected), or
// no servers to place replicas on (a cluster whose servers have not all
// found one another yet).
func Unready(err error) bool {
	var ae *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &ae) && (ae.Code == 503 || ae.ErrorCode == errCodeNoPeers)
}

// errCodeNoPeers is JetStream's "no suitable peers for placement".
const errCodeNoPeers jetstream.ErrorCode = 10005

// Delete removes queue id and its items.
func (qs *Queues) Delete(ctx context.Context, id int64) error {
	qs.forget(id)
	err := qs.js.DeleteStream(ctx, qs.stream(id))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return notFound(id)
	}
	if err != nil {
		return unavailable("delete queue %d", id, err)
	}
	return nil
}

// Info reports queue id's config and how many items it holds, counting
// an item a getter has been handed but not yet acknowledged. The count is
// the consumer's (not yet delivered, and delivered but not acknowledged):
// the stream drops an acknowledged item only when it applies the
// acknowledgement, after a get has returned, and would count it a moment
// longer. While JetStream has no leader for the queue, Info asks again
// until ctx ends.
func (qs *Queues) Info(ctx context.Context, id int64) (QueueConfig, int, error) {
	for {
		tctx, cancel := context.WithTimeout(ctx, putTry)
		// The stream's last sequence is current once a put has returned,
		// and the consumer's acknowledged floor once a get has; neither
		// count alone is (the stream drops an acknowledged item, and the
		// consumer counts a stored one, a moment later). Getters take
		// items in order, one out at a time, so every item above the
		// floor is still in the queue.
		var cons jetstream.Consumer
		st, err := qs.js.Stream(tctx, qs.stream(id))
		if err == nil {
			cons, err = st.Consumer(tctx, getters)
		}
		cancel()
		switch {
		case err == nil:
			info := cons.CachedInfo()
			return configOf(info.Config.Metadata), int(st.CachedInfo().State.LastSeq - info.AckFloor.Stream), nil
		case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound):
			return QueueConfig{}, 0, notFound(id)
		case errors.Is(err, nats.ErrConnectionClosed) || !pause(ctx):
			return QueueConfig{}, 0, unavailable("queue %d", id, err)
		}
	}
}

// Put stores it at the tail of queue id. A full queue fails with
// CodeQueueFull at once, or, with block, when ctx ends before a get
// makes room. While JetStream has no leader for the queue, the put is
// retried (under one message ID, so it is stored once) until ctx ends.
func (qs *Queues) Put(ctx context.Context, id int64, it QueueItem, block bool) error {
	m := nats.NewMsg(qs.subject(id))
	m.Data = it.Data
	m.Header.Set(HdrPutter, strconv.FormatInt(it.Putter, 10))
	m.Header.Set(HdrPutterNode, it.PutterNode)
	m.Header.Set(HdrUnbound, strconv.Itoa(int(it.Unbound)))
	msgID := nuid.Next()
	var taken chan struct{}
	for {
		if block && taken == nil {
			// Listen before trying, so a get between a refusal and the
			// wait is not missed; one wake-up is all a put needs.
			taken = make(chan struct{}, 1)
			sub, err := qs.nc.Subscribe(qs.taken(id), func(*nats.Msg) {
				select {
				case taken <- struct{}{}:
				default:
				}
			})
			if err != nil {
				return unavailable("put into queue %d", id, err)
			}
			defer sub.Unsubscribe()
		}
		// A publish whose stream leader dies never hears back, so each
		// try has a bound, and the retry stores the item once (same ID).
		pctx, cancel := context.WithTimeout(ctx, putTry)
		_, err := qs.js.PublishMsg(pctx, m, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(qs.stream(id)))
		cancel()
		switch {
		case err == nil:
			return nil
		case isFull(err):
			if !block {
				return protocol.Errorf(protocol.CodeQueueFull, "queue %d is full", id)
			}
			// A notice can pass before the listener is known across the
			// cluster's routes, so the wait for one is bounded.
			t := time.NewTimer(fullRecheck)
			select {
			case <-taken:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return protocol.Errorf(protocol.CodeQueueFull, "queue %d is full", id)
			}
			t.Stop()
		case isMissing(err):
			if _, _, ierr := qs.Info(ctx, id); isNotFound(ierr) {
				return ierr
			}
			fallthrough
		default:
			if errors.Is(err, nats.ErrConnectionClosed) || !pause(ctx) {
				return unavailable("put into queue %d", id, err)
			}
		}
	}
}

// Get takes the item at the head of queue id, for a getter in this
// process. An empty queue fails with CodeQueueEmpty at once, or, with
// block, when ctx ends first; a waiting get holds a pull request
// JetStream answers when an item is stored.
func (qs *Queues) Get(ctx context.Context, id int64, block bool) (QueueItem, error) {
	it, _, err := qs.get(ctx, id, block, false)
	return it, err
}

// Take takes the item at the head of queue id as Get does, for a getter
// this process hands it to (an interpreter of its node): the item stays
// the queue's, claimed by this process, until settle is called — with
// true once the item has reached its getter, which removes it for good,
// or with false, which gives it to the next getter. If this process dies
// before, the item goes to the next getter: a get in progress on a lost
// node never drops its item.
func (qs *Queues) Take(ctx context.Context, id int64, block bool) (it QueueItem, settle func(handed bool), err error) {
	return qs.get(ctx, id, block, true)
}

func (qs *Queues) get(ctx context.Context, id int64, block, hand bool) (QueueItem, func(bool), error) {
	cons, err := qs.consumer(ctx, id)
	if err != nil {
		return QueueItem{}, nil, err
	}
	for {
		msg, err := qs.next(ctx, cons, block)
		switch {
		case err == nil:
			if it, settle, ok := qs.take(ctx, id, msg, hand); ok {
				return it, settle, nil
			}
			continue // another getter's claim: take the next item
		case errors.Is(err, errEmpty):
			return QueueItem{}, nil, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", id)
		}
		if ctx.Err() != nil {
			return QueueItem{}, nil, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", id)
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return QueueItem{}, nil, unavailable("get from queue %d", id, err)
		}
		// A pull request into a queue deleted meanwhile goes unanswered
		// (its heartbeat missed), so that failure asks too.
		if isMissing(err) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			if _, _, ierr := qs.Info(ctx, id); isNotFound(ierr) {
				qs.forget(id)
				return QueueItem{}, nil, ierr
			}
		}
		if !pause(ctx) {
			return QueueItem{}, nil, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", id)
		}
	}
}

// consumer returns the consumer of queue id's getters, looked up once:
// asking again while JetStream has no leader for it (a failover) until
// ctx ends.
func (qs *Queues) consumer(ctx context.Context, id int64) (jetstream.Consumer, error) {
	qs.consMu.Lock()
	cons := qs.cons[id]
	qs.consMu.Unlock()
	if cons != nil {
		return cons, nil
	}
	for {
		// A request whose answer a failover lost never hears back, so
		// each try has a bound.
		tctx, cancel := context.WithTimeout(ctx, putTry)
		cons, err := qs.js.Consumer(tctx, qs.stream(id), getters)
		cancel()
		switch {
		case err == nil:
			qs.consMu.Lock()
			qs.cons[id] = cons
			qs.consMu.Unlock()
			return cons, nil
		case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, notFound(id)
		case errors.Is(err, nats.ErrConnectionClosed):
			return nil, unavailable("get from queue %d", id, err)
		case ctx.Err() != nil || !pause(ctx):
			// The get's wait ended before it could ask (a failover): the
			// queue gave it nothing, as a local one that stayed empty.
			return nil, protocol.Errorf(protocol.CodeQueueEmpty, "queue %d is empty", id)
		}
	}
}

// forget drops the consumer of queue id that consumer keeps, once the
// queue may be gone.
func (qs *Queues) forget(id int64) {
	qs.consMu.Lock()
	delete(qs.cons, id)
	qs.consMu.Unlock()
}

var errEmpty = errors.New("empty")

// next asks for one item: at once, or waiting (in rounds of at most
// getRound, none past ctx's deadline) until ctx ends.
func (qs *Queues) next(ctx context.Context, cons jetstream.Consumer, block bool) (jetstream.Msg, error) {
	if !block {
		b, err := cons.FetchNoWait(1)
		if err != nil {
			return nil, err
		}
		for msg := range b.Messages() {
			return msg, nil
		}
		if err := b.Error(); err != nil {
			return nil, err
		}
		return nil, errEmpty
	}
	for {
		wait := getRound
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d))
		}
		if wait <= 0 || ctx.Err() != nil {
			return nil, errEmpty
		}
		opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(wait)}
		if wait > 2*getHeartbeat {
			opts = append(opts, jetstream.FetchHeartbeat(getHeartbeat))
		}
		b, err := cons.Fetch(1, opts...)
		if err != nil {
			return nil, err
		}
		select {
		case msg, ok := <-b.Messages():
			if ok {
				return msg, nil
			}
		case <-ctx.Done():
			// The pull request outlives this get on the server, and an
			// item it brings would be out of reach for itemAckWait.
			go handBack(b)
			return nil, errEmpty
		}
		if err := b.Error(); err != nil {
			return nil, err
		}
	}
}

// handBack NAKs the item a pull request whose get gave up brings, so
// JetStream hands it to the next getter at once.
func handBack(b jetstream.MessageBatch) {
	for msg := range b.Messages() {
		_ = msg.Nak()
	}
}

// take claims msg for this get (with more than one replica) and
// acknowledges it, and then tells waiting putters there is room; with
// hand, it leaves the acknowledgement to the settle function it returns
// (without, that function does nothing).
// It reports false, the item acknowledged all the same, when another get
// holds the claim.
//
// Get's claim and acknowledgement go out together, so that a get costs
// one replicated round trip; a Take's claim must be settled before its
// item is handed on, and its acknowledgement wait until the item has
// reached its getter.
func (qs *Queues) take(ctx context.Context, id int64, msg jetstream.Msg, hand bool) (QueueItem, func(bool), bool) {
	var key, subject string
	if meta, err := msg.Metadata(); err == nil && qs.replicas > 1 {
		// The store time tells apart the items of a queue made again.
		key = fmt.Sprintf("%d.%d.%d", id, meta.Sequence.Stream, meta.Timestamp.UnixNano())
	}
	if hand && key != "" {
		var err error
		if subject, err = qs.claimantSubject(); err != nil {
			// No claimant subject: claim as a Get does, so that the item
			// is never handed out twice by this process's claim.
			subject = ""
		}
	}
	it := itemOf(msg)
	if !hand {
		owned := make(chan bool, 1)
		if key != "" {
			go func() { ok, _ := qs.claim(key, ""); owned <- ok }()
		} else {
			owned <- true
		}
		qs.ack(ctx, id, msg)
		if !<-owned {
			return QueueItem{}, nil, false
		}
		return it, acknowledged, true
	}
	var rev uint64
	if key != "" {
		var owned bool
		if owned, rev = qs.claim(key, subject); !owned {
			qs.ack(ctx, id, msg)
			return QueueItem{}, nil, false
		}
	}
	var once sync.Once
	settle := func(handed bool) {
		once.Do(func() {
			if handed {
				qs.ack(ctx, id, msg)
				return
			}
			if key != "" {
				qs.giveBack(key)
			}
			_ = msg.Nak()
			qs.unclaim(key, rev)
		})
	}
	return it, settle, true
}

// acknowledged is the settle function of an item acknowledged already.
func acknowledged(bool) {}

// ack acknowledges msg, waiting for JetStream to confirm it, and tells
// waiting putters of queue id there is room. It is sent again while
// JetStream does not confirm it (a failover), for up to itemAckWait: the
// claim, not the acknowledgement, says who has the item.
func (qs *Queues) ack(ctx context.Context, id int64, msg jetstream.Msg) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), itemAckWait)
	for msg.DoubleAck(actx) != nil && pause(actx) {
	}
	cancel()
	_ = qs.nc.Publish(qs.taken(id), nil)
}

// itemOf is the item msg carries.
func itemOf(msg jetstream.Msg) QueueItem {
	h := msg.Headers()
	it := QueueItem{Data: msg.Data(), PutterNode: h.Get(HdrPutterNode)}
	it.Putter, _ = strconv.ParseInt(h.Get(HdrPutter), 10, 64)
	if m, err := strconv.Atoi(h.Get(HdrUnbound)); err == nil {
		it.Unbound = protocol.UnboundMode(m)
	}
	return it
}

// pause waits retryPause, or less if ctx ends; it reports whether ctx
// is still live.
func pause(ctx context.Context) bool {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isFull reports JetStream's refusal of a put into a stream at MaxMsgs.
func isFull(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == errCodeStoreFailed
}

// isMissing reports an error that may mean the queue's stream is gone.
func isMissing(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

// errCodeStoreFailed is JetStream's code for a store refused, which a
// stream at MaxMsgs with DiscardNew gives for a put.
const errCodeStoreFailed jetstream.ErrorCode = 10077

func isNotFound(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && pe.Has(protocol.CodeQueueNotFound)
}

func notFound(id int64) *protocol.Error {
	return protocol.Errorf(protocol.CodeQueueNotFound, "queue %d not found", id)
}

func unavailable(format string, id int64, err error) *protocol.Error {
	return protocol.Errorf(protocol.CodeUnavailable, "%s: %v", fmt.Sprintf(format, id), err)
}
