//go:build unix && !linux

package baseline

import "testing"

func adoptOrphans(*testing.T) {}
