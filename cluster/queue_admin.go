package cluster

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/subinterp/subinterp/protocol"
)

// pinsMeta is the stream metadata key of a queue's pin count.
const pinsMeta = "subinterp_pins"

// QueueState describes a queue as a listing shows it.
type QueueState struct {
	ID      int64
	Config  QueueConfig
	Size    int // items, counting one handed out but not yet acknowledged
	Pins    int
	Waiting int // gets waiting on it now
}

// List describes every queue of the cluster, by ID.
func (qs *Queues) List(ctx context.Context) ([]QueueState, error) {
	l := qs.js.ListStreams(ctx, jetstream.WithStreamListSubject(qs.subj.Cluster+".q.*"))
	var out []QueueState
	prefix := qs.subj.Cluster + "_q_"
	for info := range l.Info() {
		id, err := strconv.ParseInt(strings.TrimPrefix(info.Config.Name, prefix), 10, 64)
		if err != nil || !strings.HasPrefix(info.Config.Name, prefix) {
			continue
		}
		st := QueueState{ID: id, Config: config(info), Size: int(info.State.Msgs), Pins: pins(info)}
		if ci, err := qs.js.Consumer(ctx, info.Config.Name, getters); err == nil {
			info := ci.CachedInfo()
			st.Waiting = info.NumWaiting
			st.Size = int(info.NumPending) + info.NumAckPending // as Info counts
		}
		out = append(out, st)
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "list queues: %v", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Pin counts one more pin on queue id. A pin is a mark the listing
// shows, kept in the queue's stream; a cluster's queue lives on without
// one (see Queues).
func (qs *Queues) Pin(ctx context.Context, id int64) error { return qs.addPins(ctx, id, 1) }

// Unpin drops a pin on queue id; one that has none is
// CodeInvalidArgument.
func (qs *Queues) Unpin(ctx context.Context, id int64) error { return qs.addPins(ctx, id, -1) }

// addPins rewrites the pin count in queue id's stream metadata. Two
// processes pinning one queue at the same moment can lose a count: pins
// are an operator's marks, not references anything depends on.
func (qs *Queues) addPins(ctx context.Context, id int64, d int) error {
	st, err := qs.js.Stream(ctx, qs.stream(id))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return notFound(id)
	}
	if err != nil {
		return unavailable("queue %d", id, err)
	}
	info := st.CachedInfo()
	n := pins(info) + d
	if n < 0 {
		return protocol.Errorf(protocol.CodeInvalidArgument, "queue %d is not pinned", id)
	}
	cfg := info.Config
	meta := make(map[string]string, len(cfg.Metadata)+1)
	for k, v := range cfg.Metadata {
		meta[k] = v
	}
	meta[pinsMeta] = strconv.Itoa(n)
	cfg.Metadata = meta
	if _, err := qs.js.UpdateStream(ctx, cfg); err != nil {
		return unavailable("pin queue %d", id, err)
	}
	return nil
}

func pins(info *jetstream.StreamInfo) int {
	n, _ := strconv.Atoi(info.Config.Metadata[pinsMeta])
	return n
}

// config reads a queue's config from its stream's.
func config(info *jetstream.StreamInfo) QueueConfig {
	c := configOf(info.Config.Metadata)
	if _, ok := info.Config.Metadata[maxsizeMeta]; !ok && info.Config.MaxMsgs > 0 {
		c.MaxSize = int(info.Config.MaxMsgs)
	}
	return c
}

// configOf reads a queue's config from the metadata its stream and its
// consumer carry.
func configOf(meta map[string]string) QueueConfig {
	c := QueueConfig{Unbound: protocol.UnboundReplace}
	if m, err := strconv.Atoi(meta[maxsizeMeta]); err == nil {
		c.MaxSize = m
	}
	if m, err := strconv.Atoi(meta[unboundMeta]); err == nil {
		c.Unbound = protocol.UnboundMode(m)
	}
	return c
}
