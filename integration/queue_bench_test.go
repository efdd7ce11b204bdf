package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/subinterp/subinterp/interpreters"
)

// The queue benchmarks sit beside BenchmarkRoundTrip (bench_test.go): one
// hand-off round crosses the supervisor four times (host put, worker get,
// worker put, host get), a pipeline item twice (producer put, consumer get).

// relayLua forwards every item from qin to qout until it sees "stop".
const relayLua = `function(qin, qout)
	local n = 0
	while true do
		local v = qin:get()
		if v == "stop" then return n end
		qout:put(v)
		n = n + 1
	end
end`

// BenchmarkQueueHandoff measures one round: the host puts an item, a worker
// takes it with q_in:get() and hands it back with q_out:put(), and the host
// gets it.
func BenchmarkQueueHandoff(b *testing.B) {
	rt := interpreters.New()
	defer rt.Close()
	handoff, stop := startRelay(b, rt)
	// One warm-up round, so the relay is known to be running.
	if err := handoff(-1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := handoff(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	stop()
}

// startRelay starts relayLua in an interpreter of rt and returns one
// hand-off (the host puts i, the relay gets it and puts it on, the host
// gets it back) and a stop that ends the relay and checks it forwarded
// every item.
func startRelay(b *testing.B, rt *interpreters.Runtime) (handoff func(i int) error, stop func()) {
	it, err := rt.Create()
	if err != nil {
		b.Fatal(err)
	}
	qin, err := rt.CreateQueue(0)
	if err != nil {
		b.Fatal(err)
	}
	qout, err := rt.CreateQueue(0)
	if err != nil {
		b.Fatal(err)
	}
	relay := it.CallInThread(relayLua, qin, qout)
	handed := int64(0)
	handoff = func(i int) error {
		if err := qin.Put(i); err != nil {
			return err
		}
		v, err := qout.Get()
		if err == nil && v != int64(i) {
			err = fmt.Errorf("hand-off %d came back as %#v", i, v)
		}
		handed++
		return err
	}
	return handoff, func() {
		if err := qin.Put("stop"); err != nil {
			b.Error(err)
		}
		if n, err := relay.Wait(); err != nil || n != handed {
			b.Errorf("the relay forwarded %v items (%v), want %d", n, err, handed)
		}
		_ = it.Close()
	}
}

// BenchmarkQueuePipeline measures interpreter-to-interpreter throughput:
// one worker puts 1..N from Lua, another gets them in Lua and checks their
// order. Reported as items/s.
func BenchmarkQueuePipeline(b *testing.B) {
	for _, bc := range []struct {
		name    string
		maxsize int
	}{
		{"unbounded", 0},
		{"maxsize-64", 64},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt := interpreters.New()
			defer rt.Close()
			producer, err := rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			consumer, err := rt.Create()
			if err != nil {
				b.Fatal(err)
			}
			q, err := rt.CreateQueue(bc.maxsize)
			if err != nil {
				b.Fatal(err)
			}
			if err := producer.Exec(producerLua); err != nil {
				b.Fatal(err)
			}
			if err := consumer.Exec(consumerLua); err != nil {
				b.Fatal(err)
			}
			// Warm both workers' queue paths.
			if _, err := producer.Call("produce", q, 1, 1); err != nil {
				b.Fatal(err)
			}
			if _, err := consumer.Call("consume", q, 1, 1); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			began := time.Now()
			cons := consumer.CallInThread("consume", q, 1, b.N)
			prod := producer.CallInThread("produce", q, 1, b.N)
			if _, err := prod.Wait(); err != nil {
				b.Fatal(err)
			}
			res, err := cons.Wait()
			elapsed := time.Since(began)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			got, ok := res.(interpreters.Tuple)
			if !ok || len(got) != 3 || got[0] != int64(b.N) || got[1] != int64(0) {
				b.Fatalf("consume = %#v, want (N=%d, 0 errors, checksum)", res, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
		})
	}
}
