package density

import (
	"testing"

	"github.com/subinterp/subinterp/internal/baseline"
	"github.com/subinterp/subinterp/interpreters"
)

// BenchmarkLaunch measures a cold Create in a light host, one that links
// subinterp alone, beside the start of a program linking only gopher-lua
// and msgpack: the floor a worker's start is held to.
func BenchmarkLaunch(b *testing.B) {
	b.Run("bare-luamsgpack-start", func(b *testing.B) {
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
	})
	b.Run("subinterp-create-cold", func(b *testing.B) {
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
	})
}
