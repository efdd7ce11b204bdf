package supervisor

import (
	"bytes"
	"strings"
	"sync"
)

// stderrTailLines is how many of a worker's last stderr lines a crash
// report carries.
const stderrTailLines = 20

// tailBuffer keeps what a worker wrote to stderr for crash reports: the
// last bytes, and the first bytes of the most recent Go panic or fatal
// error, whose cause heads a goroutine dump far longer than the tail.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte // the last maxTail bytes
	cause []byte // the first bytes from the latest "panic: " or "fatal error: "
}

const (
	maxTail  = 16 << 10
	maxCause = 2 << 10
)

var crashMarkers = [][]byte{[]byte("panic: "), []byte("fatal error: ")}

func newTailBuffer() *tailBuffer { return &tailBuffer{} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range crashMarkers {
		if i := bytes.Index(p, m); i >= 0 {
			t.cause = append(t.cause[:0], p[i:min(len(p), i+maxCause)]...)
			break
		}
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - maxTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Tail returns the crash's cause, if there was one, then the last
// stderrTailLines lines.
func (t *tailBuffer) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(string(bytes.TrimRight(t.buf, "\n")), "\n")
	if len(lines) > stderrTailLines {
		lines = lines[len(lines)-stderrTailLines:]
	}
	tail := strings.Join(lines, "\n")
	if len(t.cause) == 0 {
		return tail
	}
	cause := strings.Split(string(t.cause), "\n")
	cause = cause[:min(len(cause), 3)]
	head := strings.Join(cause, "\n")
	if strings.Contains(tail, head) {
		return tail
	}
	return head + "\n...\n" + tail
}

// contains reports whether the kept stderr contains s.
func (t *tailBuffer) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.cause, []byte(s)) || bytes.Contains(t.buf, []byte(s))
}

// outOfMemoryMarks are what a worker writes when the kernel's address
// space limit fails an allocation: the Go runtime's fatal error or, in a
// race-enabled build, ThreadSanitizer's failure to map shadow memory and
// the runtime's failure to reserve its race-mode heap.
var outOfMemoryMarks = []string{
	"out of memory",
	"ThreadSanitizer failed to allocate",
	"too many address space collisions for -race mode",
}

// containsAny reports whether the kept stderr contains one of marks.
func (t *tailBuffer) containsAny(marks []string) bool {
	for _, m := range marks {
		if t.contains(m) {
			return true
		}
	}
	return false
}
