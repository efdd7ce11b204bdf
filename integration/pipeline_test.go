package integration

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// producerLua defines produce(q, from, to): it puts from..to, one item
// each, in order.
const producerLua = `
function produce(q, from, to)
	for i = from, to do
		q:put(i)
	end
	return to - from + 1
end`

// consumerLua defines consume(q, from, n): it gets n items and checks
// that they are exactly from, from+1, … in order. It returns the number of
// items taken, the number of items out of place (a gap, a duplicate, a
// reordering or a non-number each count) and the sum of the numbers seen.
// first_bad keeps the first item out of place and what was expected.
const consumerLua = `
function consume(q, from, n)
	local expect, bad, sum = from, 0, 0
	for k = 1, n do
		local v = q:get()
		if v ~= expect then
			bad = bad + 1
			if first_bad == nil then first_bad = {k, expect, tostring(v)} end
		end
		if type(v) == "number" then
			sum = sum + v
			expect = v + 1
		else
			expect = expect + 1
		end
	end
	return n, bad, sum
end`

// spinnerLua defines spin(own, idle, watched): it keeps putting and
// getting items of its own queue and looking at the size of another,
// forever, resting a moment in a timed get on an empty queue each round so
// as not to starve the pipeline of CPU. Killed mid-round, it leaves what
// it had put in its queue, unbound or dropped.
const spinnerLua = `
function spin(own, idle, watched)
	local interpreters = require("interpreters")
	local i = 0
	while true do
		i = i + 1
		own:put({n = i, pad = "spinner"})
		own:put(i, {unbounditems = interpreters.UNBOUND_REMOVE})
		local t = own:get()
		local x = own:get()
		if t.n ~= i or x ~= i then error("spinner saw its own queue out of order") end
		if watched:qsize() < 0 then error("negative qsize") end
		local ok, e = pcall(idle.get, idle, {timeout = 0.002})
		if ok or e.type ~= "QueueEmpty" then error("the idle queue gave " .. tostring(e)) end
	end
end`

// pipelineItems is the number of items the pipeline moves; -short moves
// a fifth of them.
const pipelineItems = 100000

// pipelineBound is the longest the whole pipeline may take before the test
// fails instead of hanging: every item is two requests to the supervisor,
// and under the race detector each costs a few hundred microseconds.
const pipelineBound = 4 * time.Minute

// TestPipelineSurvivesKill moves 100,000 items from a producer interpreter
// to a consumer interpreter over one queue, each number one queue item,
// while a third interpreter that also uses queues (its own, and the size
// of the pipeline's) is SIGKILLed half-way through. Nothing is lost,
// duplicated or reordered, the pipeline completes, and the killed
// interpreter is gone.
func TestPipelineSurvivesKill(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t)
	producer := create(t, rt)
	consumer := create(t, rt)
	spinner := create(t, rt)

	pipe := qNew(t, rt, 1000)
	spinQ := qNew(t, rt, 0)
	idle := qNew(t, rt, 0)
	progress := qNew(t, rt, 0)
	mustExec(t, producer, producerLua)
	mustExec(t, consumer, consumerLua)
	mustExec(t, spinner, spinnerLua)
	// The consumer reports its progress every 10,000 items, by wrapping
	// consume around chunks.
	mustExec(t, consumer, `
		function consume_all(q, progress, total, chunk)
			local taken, bad, sum = 0, 0, 0
			while taken < total do
				local n = math.min(chunk, total - taken)
				local t, b, s = consume(q, taken + 1, n)
				taken, bad, sum = taken + t, bad + b, sum + s
				progress:put(taken)
			end
			return taken, bad, sum
		end`)

	spinPid := pid(t, spinner)
	spin := spinner.CallInThread("spin", spinQ, idle, pipe)
	waitRunning(t, spinner, spin.Done())

	items := pipelineItems
	if testing.Short() {
		items /= 5
	}
	began := time.Now()
	cons := consumer.CallInThread("consume_all", pipe, progress, items, items/10)
	prod := producer.CallInThread("produce", pipe, 1, items)

	// Kill the spinner once the consumer is half-way.
	for {
		ctx, cancel := contextWithTimeout(pipelineBound)
		v, err := progress.GetContext(ctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for the consumer's progress: %v", err)
		}
		if v.(int64) >= int64(items/2) {
			break
		}
	}
	if err := syscall.Kill(spinPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_, err := waitThread(t, spin)
	wantKilledExit(t, "the spinner's call under the kill", err, spinner.ID())

	deadline := time.After(pipelineBound)
	for _, th := range []*interpreters.Thread{prod, cons} {
		select {
		case <-th.Done():
		case <-deadline:
			t.Fatalf("the pipeline did not finish within %v", pipelineBound)
		}
	}
	n, err := prod.Wait()
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	wantEqual(t, "items produced", n, int64(items))
	res, err := cons.Wait()
	if err != nil {
		t.Fatalf("consume_all: %v", err)
	}
	t.Logf("%d items through the pipeline in %v", items, time.Since(began))
	sum := int64(items) * int64(items+1) / 2
	if !equalTuple(res, int64(items), int64(0), sum) {
		t.Errorf("consume_all = %#v, want (%d taken, 0 out of place, sum %d); first out of place: %#v",
			res, items, sum, global(t, consumer, "first_bad"))
	}
	wantEqual(t, "the pipe's size at the end", qSize(t, pipe), 0)

	// The killed interpreter is reported gone; the others are not.
	_, err = rt.Lookup(spinner.ID())
	wantNotFound(t, "Lookup of the killed spinner", err)
	wantNotFound(t, "Exec in the killed spinner", spinner.Exec("x = 1"))
	wantList(t, "ListAll after the kill", listAll(t, rt), rt.GetMain(), producer, consumer)
	waitGone(t, spinPid)
	// Its queue lives on (the host holds it), minus what the spinner put
	// with UNBOUND_REMOVE; whatever is left is unbound.
	for {
		v, err := spinQ.GetNowait()
		if errors.Is(err, interpreters.ErrQueueEmpty) {
			break
		}
		if err != nil {
			t.Fatalf("draining the spinner's queue: %v", err)
		}
		if v != interpreters.Unbound {
			t.Errorf("an item the killed spinner put came out as %#v, want interpreters.Unbound", v)
		}
	}
}

// equalTuple reports whether v is a Tuple holding exactly want.
func equalTuple(v any, want ...any) bool {
	tu, ok := v.(interpreters.Tuple)
	if !ok || len(tu) != len(want) {
		return false
	}
	for i := range want {
		if tu[i] != want[i] {
			return false
		}
	}
	return true
}
