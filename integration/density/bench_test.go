package density

import (
	"testing"

	"github.com/subinterp/subinterp/internal/launchbench"
)

// BenchmarkLaunch measures a cold Create in a light host, one that links
// subinterp alone, beside the start of a program linking only gopher-lua
// and msgpack: the floor a worker's start is held to.
func BenchmarkLaunch(b *testing.B) {
	b.Run("bare-luamsgpack-start", launchbench.BareStart)
	b.Run("subinterp-create-cold", launchbench.CreateCold)
}
