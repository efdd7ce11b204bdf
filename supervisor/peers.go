package supervisor

import (
	"context"
	"io"
	"sort"
)

// Peers reaches the interpreters of the other nodes of a cluster for Lua
// code's interpreters module, so that a script sees the whole runtime, as
// a cluster's clients do: list_all lists theirs too, Interpreter(id) finds
// them, and a handle's methods reach them. A node supplies it; how it
// reaches them is none of the supervisor's business.
type Peers interface {
	// List describes the interpreters alive on the other nodes.
	List(ctx context.Context) ([]Info, error)
	// Has reports whether interpreter id lives on another node.
	Has(ctx context.Context, id int64) (bool, error)
	IsRunning(ctx context.Context, id int64) (bool, error)
	Close(ctx context.Context, id int64) error
	// Exec and Call write the output of the code they run to out.
	Exec(ctx context.Context, id int64, src string, out io.Writer) error
	Call(ctx context.Context, id int64, fn string, args []byte, out io.Writer) ([]byte, error)
	PrepareMain(ctx context.Context, id int64, names []byte) error
}

// elsewhere reports whether id is not one of this supervisor's
// interpreters but one of another node's.
func (s *Supervisor) elsewhere(ctx context.Context, id int64) bool {
	if s.cfg.Peers == nil || id == 0 || s.Exists(id) {
		return false
	}
	has, err := s.cfg.Peers.Has(ctx, id)
	return err == nil && has
}

// listAll is list_all's answer: main, then every interpreter of the
// runtime (of the cluster, with Peers), oldest first.
func (s *Supervisor) listAll(ctx context.Context) ([]int64, error) {
	infos := s.List()
	if s.cfg.Peers != nil {
		more, err := s.cfg.Peers.List(ctx)
		if err != nil {
			return nil, err
		}
		infos = append(infos, more...)
		// IDs come in per-node blocks: unique, but in creation order only
		// within a node.
		sort.SliceStable(infos, func(i, j int) bool {
			if !infos[i].Created.Equal(infos[j].Created) {
				return infos[i].Created.Before(infos[j].Created)
			}
			return infos[i].ID < infos[j].ID
		})
	}
	ids := make([]int64, 0, len(infos)+1)
	ids = append(ids, 0)
	for _, in := range infos {
		ids = append(ids, in.ID)
	}
	return ids, nil
}

// writerOf is where the output of code another node runs for interpreter
// from goes: where from's own output goes now.
func (s *Supervisor) writerOf(ctx context.Context, from int64) io.Writer {
	if w, ok := ctx.Value(outputKey{}).(io.Writer); ok && w != nil {
		return w
	}
	it, err := s.get(from)
	if err != nil {
		return io.Discard
	}
	if out := it.callOut.Load(); out != nil {
		return *out
	}
	return it.stdout
}
