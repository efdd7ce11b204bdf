//go:build !linux

package baseline

import "os/exec"

// Elsewhere the lifeline pipe alone ends orphaned children.
func setParentDeathSignal(*exec.Cmd) {}
