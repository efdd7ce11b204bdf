// Package launchbench holds the sub-benchmarks of starting a worker that
// more than one test package runs, so that a heavy host (integration, which
// links the NATS server) and a light one (integration/density) measure
// exactly the same thing and differ only in what their binaries link.
package launchbench
