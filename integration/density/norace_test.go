//go:build !race

package density

const raceEnabled = false
