//go:build !subinterp_nointernals

package worker

// luaInternalsOff is set by the build tag subinterp_nointernals, which
// keeps the worker away from gopher-lua's unexported internals as if their
// start-up checks had failed: the portable protected calls of portable.go
// and gopher-lua's own loop run instead of luafix.go's and fastloop.go's.
// `make test` runs the worker and integration tests under it too, so the
// routes a gopher-lua upgrade falls back to are tested.
const luaInternalsOff = false
