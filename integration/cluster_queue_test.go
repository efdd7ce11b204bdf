package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/subinterp/subinterp/cluster/node"
	"github.com/subinterp/subinterp/interpreters"
)

// startR3Cluster starts three daemons whose embedded NATS servers route
// to one another and keep three replicas of everything: one JetStream
// cluster. It returns the nodes, named a, b and c.
func startR3Cluster(t *testing.T, name string) []*testNode {
	t.Helper()
	return startRoutedCluster(t, name, node.Config{Replicas: 3})
}

// TestClusterQueues: on three nodes whose NATS servers form one
// JetStream cluster with three replicas, a queue is one queue wherever it
// was made and whoever holds it: FIFO and maxsize hold across nodes, a
// Lua get on one node is answered by a put on another, handles travel as
// any value does, confinement still walls queues in, and the unbound
// modes apply when the putter's node is lost.
func TestClusterQueues(t *testing.T) {
	t.Parallel()
	name := newClusterName()
	nodes := startR3Cluster(t, name)
	rt := dialCluster(t, nodes[0].node.ClientURL(), []string{"a", "b", "c"}, interpreters.WithCluster(name))
	onA := create(t, rt, interpreters.WithNode("a"))
	onB := create(t, rt, interpreters.WithNode("b"))
	onC := create(t, rt, interpreters.WithNode("c"))

	// FIFO: the client's queue, filled from a and from the client, read
	// from b and from the client, in the order put.
	q, err := rt.CreateQueue(0)
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	mustExec(t, onA, "interp = require('interpreters')")
	mustExec(t, onB, "interp = require('interpreters')")
	mustExec(t, onC, "interp = require('interpreters')")
	mustCall(t, onA, "function(q) for i = 1, 20 do q:put(i) end end", q)
	if err := q.Put(int64(21)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := onB.PrepareMain(map[string]any{"q": q}); err != nil {
		t.Fatalf("PrepareMain: %v", err)
	}
	got := mustCall(t, onB, "function() local t = {} for i = 1, 11 do t[i] = q:get() end return table.concat(t, ',') end")
	wantEqual(t, "the first eleven items, read on b", got, "1,2,3,4,5,6,7,8,9,10,11")
	for want := int64(12); want <= 21; want++ {
		v, err := q.GetNowait()
		if err != nil {
			t.Fatalf("GetNowait for item %d: %v", want, err)
		}
		wantEqual(t, "an item read by the client", v, want)
	}
	_, err = q.GetNowait()
	wantErr(t, "GetNowait on the emptied queue", err, interpreters.ErrQueueEmpty)

	// maxsize: a queue Lua made on c refuses a third item everywhere and
	// says it is full; a blocking put on a waits for a get on b.
	v := mustCall(t, onC, "function() local q = interp.create_queue(2); q:put('x'); q:put('y'); return q end")
	small, ok := v.(*interpreters.Queue)
	if !ok {
		t.Fatalf("a queue returned from c came back as %T", v)
	}
	full, err := small.Full()
	if err != nil || !full {
		t.Fatalf("Full = %v, %v; want true", full, err)
	}
	size, err := small.QSize()
	if err != nil || size != 2 {
		t.Fatalf("QSize = %d, %v; want 2", size, err)
	}
	wantErr(t, "PutNowait into the full queue", small.PutNowait("z"), interpreters.ErrQueueFull)
	got = mustCall(t, onA, `function(q)
		local ok, err = pcall(q.put_nowait, q, 'z')
		local ok2, err2 = pcall(q.put, q, 'z', {timeout = 0.2})
		return err.type .. ',' .. err2.type .. ',' .. q:maxsize()
	end`, small)
	wantEqual(t, "puts on a into the full queue", got, "QueueFull,QueueFull,2")
	blocked := onA.CallInThread("function(q) q:put('z') return 'in' end", small)
	waitRunning(t, onA, blocked.Done())
	got = mustCall(t, onB, "function(q) return q:get() end", small)
	wantEqual(t, "the head of the full queue, read on b", got, "x")
	if res, err := blocked.Wait(); err != nil || res != "in" {
		t.Fatalf("the blocked put on a: %v, %v", res, err)
	}
	got = mustCall(t, onB, "function(q) return q:get() .. q:get() .. tostring(q:empty()) end", small)
	wantEqual(t, "the rest, read on b", got, "yztrue")

	// A Lua get on a, waiting, is answered by a put on b; a timeout ends
	// a get on an empty queue as it does locally.
	waiting := onA.CallInThread("function(q) return q:get() end", q)
	waitRunning(t, onA, waiting.Done())
	mustCall(t, onB, "function(q) q:put('from b') end", q)
	if res, err := waiting.Wait(); err != nil || res != "from b" {
		t.Fatalf("the get waiting on a: %v, %v; want from b", res, err)
	}
	got = mustCall(t, onC, "function(q) local ok, err = pcall(q.get, q, {timeout = 0.2}) return err.type end", q)
	wantEqual(t, "a get with a timeout on the empty queue", got, "QueueEmpty")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = q.GetContext(ctx)
	cancel()
	wantErr(t, "GetContext on the empty queue", err, interpreters.ErrQueueEmpty)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetContext on the empty queue: %v; want it to say the deadline passed", err)
	}

	// A handle inside another queue's item reaches c.
	mustCall(t, onA, "function(q, s) q:put({inner = s}) end", q, small)
	got = mustCall(t, onC, "function(q) local t = q:get() t.inner:put('deep') return t.inner:qsize() end", q)
	wantEqual(t, "a queue handed over inside an item", got, int64(1))
	if v, err := small.Get(); err != nil || v != "deep" {
		t.Fatalf("Get of the item put through the handed queue: %v, %v", v, err)
	}

	// Confinement: a confined interpreter reaches only the queues it was
	// handed, on a cluster too.
	conf := create(t, rt, interpreters.WithNode("b"), interpreters.WithConfined())
	got = mustCall(t, conf, fmt.Sprintf("function() local ok, err = pcall(require('interpreters').Queue, %d) return err.type end", q.ID()))
	wantEqual(t, "a confined interpreter naming a queue by its ID", got, "QueueNotFoundError")
	got = mustCall(t, conf, "function(q) q:put(1) return q:get() end", q)
	wantEqual(t, "a confined interpreter using a queue it was handed", got, int64(1))

	// Unbound modes: c's interpreter puts items and c is lost; then each
	// item follows its mode.
	mustCall(t, onC, `function(q)
		q:put('kept')
		q:put('removed', {unbounditems = interp.UNBOUND_REMOVE})
		q:put('error', {unbounditems = interp.UNBOUND_ERROR})
		q:put('replaced', {unbounditems = interp.UNBOUND})
	end`, q)
	if err := q.Put("client's"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	nodes[2].leave()
	waitNodes(t, rt, "a", "b")
	v, err = q.Get()
	wantEqual(t, "the default mode's item (replace) after c was lost", v, interpreters.Unbound)
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Get() // the removed item is skipped
	wantErr(t, "the UNBOUND_ERROR item after c was lost", err, interpreters.ErrItemInterpreterDestroyed)
	v, err = q.Get()
	wantEqual(t, "the UNBOUND item after c was lost", v, interpreters.Unbound)
	got = mustCall(t, onB, "function(q) return q:get() end", q)
	wantEqual(t, "the client's item, read on b after c was lost", got, "client's")

	// An interpreter closed on a live node unbinds its items too, read
	// on another node.
	gone := create(t, rt, interpreters.WithNode("a"))
	mustCall(t, gone, "function(q) q:put('bye', {unbounditems = require('interpreters').UNBOUND_ERROR}) q:put('bye2') end", q)
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	got = mustCall(t, onB, `function(q)
		local ok, err = pcall(q.get, q)
		return err.type .. ',' .. tostring(q:get() == interp.UNBOUND)
	end`, q)
	wantEqual(t, "the items of an interpreter closed on a, read on b", got, "ItemInterpreterDestroyed,true")
}
