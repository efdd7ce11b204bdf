package supervisor

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
)

// stderrTailLines is how many of a worker's last stderr lines a crash
// report carries.
const stderrTailLines = 20

// tailBuffer keeps what a worker wrote to stderr for crash reports: the
// last bytes, and the first bytes of the most recent crash report of the
// Go runtime (a panic, a fatal error, or the dump a signal such as SIGQUIT
// or SIGABRT ends it with), whose cause heads a goroutine dump far longer
// than the tail.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte // the last maxTail bytes
	cause []byte // the first bytes from the latest crash report's header
}

const (
	maxTail  = 16 << 10
	maxCause = 2 << 10
)

// crashHeader finds the headers that start the Go runtime's crash reports.
var crashHeader = regexp.MustCompile(`panic: |fatal error: |(?m:^SIG[A-Z0-9]+: )`)

func newTailBuffer() *tailBuffer { return &tailBuffer{} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if all := crashHeader.FindAllIndex(p, -1); len(all) > 0 {
		i := all[len(all)-1][0]
		t.cause = append(t.cause[:0], p[i:min(len(p), i+maxCause)]...)
	} else if n := len(t.cause); n > 0 && n < maxCause {
		// The report goes on in this write: a header can end one write
		// ("fatal error: ") and its cause begin the next.
		t.cause = append(t.cause, p[:min(len(p), maxCause-n)]...)
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

// outOfMemoryDeaths are how a worker dies when the kernel's address space
// limit fails an allocation: the exit status of the runtime that failed,
// with the report it wrote just before. A script can write any text to
// stderr, but it cannot choose how its worker ends: os.exit only fails the
// call, a signal it sends is reported as that signal, or (SIGQUIT, SIGABRT)
// makes the Go runtime exit with status 2 after a crash report of its own.
// So the status decides, and the report must be the last one the runtime
// wrote, which no text written before it can be.
var outOfMemoryDeaths = []struct {
	code  int
	mark  string
	cause bool // mark must be in the latest crash report, not just anywhere
}{
	{2, "out of memory", true},                                    // the Go runtime: "fatal error: [runtime: ]out of memory"
	{2, "too many address space collisions for -race mode", true}, // its race-mode heap
	{66, "ThreadSanitizer failed to allocate", false},             // race-detector shadow memory, reported by TSan itself
}

// diedOutOfMemory reports whether a worker that exited with code (-1 when
// a signal ended it) and wrote t to stderr died of its memory limit.
func diedOutOfMemory(code int, t *tailBuffer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, d := range outOfMemoryDeaths {
		if code != d.code {
			continue
		}
		if d.cause && bytes.Contains(t.cause, []byte(d.mark)) || !d.cause && bytes.Contains(t.buf, []byte(d.mark)) {
			return true
		}
	}
	return false
}
