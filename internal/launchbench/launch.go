package launchbench

import (
	"testing"

	"github.com/subinterp/subinterp/internal/baseline"
	"github.com/subinterp/subinterp/interpreters"
)

// BareStart measures starting a program that links only gopher-lua and
// msgpack until it exits: the floor a worker's start is held to. The wait
// for its exit is not timed.
func BareStart(b *testing.B) {
	if err := baseline.BuildBare(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(baseline.RemoveBare)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wait, err := baseline.StartBare()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := wait(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// CreateCold measures a cold Create on a fresh Runtime; closing each
// interpreter is not timed.
func CreateCold(b *testing.B) {
	rt := interpreters.New()
	defer rt.Close()
	for i := 0; i < b.N; i++ {
		interp, err := rt.Create()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := interp.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
