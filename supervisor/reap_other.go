//go:build !linux

package supervisor

// awaitExit reaps the worker once it exits. Without waitid's WNOWAIT the
// reap cannot wait under mu, so a signal sent in the instant between the
// reap and its record could reach a recycled pid.
func (r *workerRunner) awaitExit() {
	ws := r.wait4()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recordExit(ws)
}
