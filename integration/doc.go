// Package integration holds end-to-end tests of the interpreters package:
// every test drives real worker processes through the public API, with no
// mocks, and the run as a whole fails if any worker process outlives it.
package integration
