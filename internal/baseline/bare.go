package baseline

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// bare is the bare program StartBare built, until RemoveBare removes it.
var bare struct {
	mu   sync.Mutex
	path string
}

// bareBinary builds the bare command, once until RemoveBare.
func bareBinary() (string, error) {
	bare.mu.Lock()
	defer bare.mu.Unlock()
	if bare.path != "" {
		return bare.path, nil
	}
	dir, err := os.MkdirTemp("", "subinterp-bare-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bare")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "build", "-o", path, "github.com/subinterp/subinterp/internal/baseline/bare").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building the bare baseline: %v\n%s", err, out)
	}
	bare.path = path
	return path, nil
}

// StartBare is the start-up floor that a worker's start is measured
// against: it runs a program linking only gopher-lua and msgpack (built
// with the go command the first time) and returns once the program has
// made a Lua state and said so. wait reaps it; a benchmark calls it with
// its timer stopped, as a worker's Create does not wait for an exit.
func StartBare() (wait func() error, err error) {
	path, err := bareBinary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var ready string
	if err := msgpack.NewDecoder(out).Decode(&ready); err != nil || ready != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("bare baseline said %q (%v)", ready, err)
	}
	return cmd.Wait, nil
}

// BuildBare builds the program StartBare runs, if it is not built yet, so
// that a benchmark can leave the build out of its timing.
func BuildBare() error {
	_, err := bareBinary()
	return err
}

// RemoveBare removes the bare program StartBare built, if it did.
func RemoveBare() {
	bare.mu.Lock()
	defer bare.mu.Unlock()
	if bare.path != "" {
		os.RemoveAll(filepath.Dir(bare.path))
		bare.path = ""
	}
}
