//go:build subinterp_nointernals

package worker

// luaInternalsOff: see internals_on.go.
const luaInternalsOff = true
