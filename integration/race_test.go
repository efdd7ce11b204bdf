//go:build race

package integration

// raceEnabled: this test binary, and so every worker it spawns, runs under
// the race detector.
const raceEnabled = true
