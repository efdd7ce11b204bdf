// Package proctest reads what tests need to know about processes from
// Linux's /proc: a process's parent, name and state, this process's
// children, a process's private memory and this process's open file
// descriptors, and it checks that a host gave back the goroutines,
// descriptors and child processes that interpreters took. It exists so
// that the integration test packages share one reading of /proc; it
// imports nothing beyond the standard library.
package proctest
