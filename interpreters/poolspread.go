package interpreters

import (
	"errors"
	"sort"
)

// A pool on a cluster runtime spreads its workers over the nodes: each new
// worker goes to the live node holding the fewest of the pool's workers,
// the least loaded of those. Least-loaded placement alone would not do
// it: the load a node reports lags the creates in flight, and a node that
// is busy with other interpreters would get none of the pool, which then
// dies whole with the node that took it all.

// spreadNode picks the node of a new worker and counts it there; "" on a
// runtime that is not a cluster, or with no live node (Create then says
// why). p.mu is held.
func (p *Pool) spreadNode() string {
	b, err := p.rt.backend()
	if err != nil {
		return ""
	}
	cb, ok := b.(*clusterBackend)
	if !ok {
		return ""
	}
	live := cb.c.Nodes()
	if len(live) == 0 {
		return ""
	}
	sort.SliceStable(live, func(i, j int) bool {
		mi, mj := p.onNode[live[i].Name], p.onNode[live[j].Name]
		if mi != mj {
			return mi < mj
		}
		return live[i].Interpreters < live[j].Interpreters
	})
	if p.onNode == nil {
		p.onNode = make(map[string]int)
	}
	p.onNode[live[0].Name]++
	return live[0].Name
}

// leftNode uncounts a worker that has ended, or never started, on node.
// p.mu is held.
func (p *Pool) leftNode(node string) {
	if node == "" {
		return
	}
	if p.onNode[node]--; p.onNode[node] <= 0 {
		delete(p.onNode, node)
	}
}

// createOn creates a worker's interpreter on node, or where the runtime
// places it when node is "" or was lost since it was picked.
func (p *Pool) createOn(node string) (*Interpreter, error) {
	if node == "" {
		return p.rt.Create()
	}
	it, err := p.rt.Create(WithNode(node))
	if errors.Is(err, ErrInvalidArgument) {
		return p.rt.Create()
	}
	return it, err
}
