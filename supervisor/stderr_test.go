package supervisor

import "testing"

// TestOutOfMemoryReportAcrossWrites: the runtime may write a crash
// report's header in one write and its cause in the next; the death is
// still known for what it was.
func TestOutOfMemoryReportAcrossWrites(t *testing.T) {
	tb := newTailBuffer()
	for _, w := range []string{"some output\nfatal error: ", "runtime: out of memory\n\ngoroutine 1 [running]:\n", "main.main()\n"} {
		_, _ = tb.Write([]byte(w))
	}
	if !diedOutOfMemory(2, tb) {
		t.Errorf("an out-of-memory report split across writes was not recognised; cause %q", tb.cause)
	}
	// A later report replaces it: a script's own text cannot stand for
	// the runtime's last word.
	_, _ = tb.Write([]byte("SIGQUIT: quit\nPC=0x0\n"))
	if diedOutOfMemory(2, tb) {
		t.Error("a SIGQUIT dump after the out-of-memory text counted as out of memory")
	}
}
