package integration

import (
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
	interp, err := rt.Create()
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
	relay := interp.CallInThread(relayLua, qin, qout)
	// One warm-up round, so the relay is known to be running.
	if err := qin.Put(-1); err != nil {
		b.Fatal(err)
	}
	if _, err := qout.Get(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := qin.Put(i); err != nil {
			b.Fatal(err)
		}
		v, err := qout.Get()
		if err != nil {
			b.Fatal(err)
		}
		if v != int64(i) {
			b.Fatalf("round %d: got %#v", i, v)
		}
	}
	b.StopTimer()
	if err := qin.Put("stop"); err != nil {
		b.Fatal(err)
	}
	n, err := relay.Wait()
	if err != nil {
		b.Fatal(err)
	}
	if n != int64(b.N+1) {
		b.Fatalf("the relay forwarded %v items, want %d", n, b.N+1)
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
