package supervisor

// Totals counts what happened to a supervisor's interpreters since it was
// made, for monitoring: a daemon exports them as metrics.
type Totals struct {
	// Created counts interpreters created, by the host or from Lua.
	Created int64
	// Crashed counts interpreters whose worker ended on its own (killed,
	// crashed, out of memory) rather than by Close.
	Crashed int64
	// Restarted counts workers a restart policy brought back.
	Restarted int64
}

// Totals returns the counters.
func (s *Supervisor) Totals() Totals {
	return Totals{Created: s.created.Load(), Crashed: s.crashed.Load(), Restarted: s.restarted.Load()}
}
