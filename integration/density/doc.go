// Package density holds the tests that keep thousands of interpreters
// alive in one host (make thousand, make tenthousand) and measure what an
// idle one costs: its worker's memory and threads, the host's goroutines
// and descriptors, and CPU.
//
// They live apart from the integration package because a worker is the
// host's executable: every package the host links initialises in every
// worker, and the integration tests link the cluster's NATS server, whose
// process-statistics package wakes every process that links it once a
// second. This test binary links subinterp alone, as a program that
// imports it does.
package density
