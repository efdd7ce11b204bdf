package supervisor

import (
	"bytes"
	"strings"
	"sync"
)

// stderrTailLines is how many of a worker's last stderr lines a crash
// report carries.
const stderrTailLines = 20

// tailBuffer keeps the last bytes a worker wrote to stderr, for crash
// reports; a Go panic's first lines are what explain a crash.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer() *tailBuffer { return &tailBuffer{max: 16 << 10} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Tail returns the last stderrTailLines lines.
func (t *tailBuffer) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := bytes.TrimRight(t.buf, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > stderrTailLines {
		lines = lines[len(lines)-stderrTailLines:]
	}
	return strings.Join(lines, "\n")
}
