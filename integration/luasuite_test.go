package integration

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gopherLuaScripts are the Lua test files gopher-lua's own script_test.go
// runs, by directory of its module.
var gopherLuaScripts = []struct {
	dir   string
	files []string
}{
	{"_glua-tests", []string{"base.lua", "coroutine.lua", "db.lua", "issues.lua", "os.lua", "table.lua", "vm.lua", "math.lua", "strings.lua", "goto.lua"}},
	{"_lua5.1-tests", []string{"attrib.lua", "calls.lua", "closure.lua", "constructs.lua", "events.lua", "literals.lua", "locals.lua",
		"math.lua", "sort.lua", "strings.lua", "vararg.lua", "pm.lua", "files.lua"}},
}

// TestGopherLuaScripts: Lua stays Lua. The 23 test files gopher-lua runs
// on itself pass under `subinterp run --stdlib` as they do under plain
// gopher-lua: a trusted script gets the whole standard library (io files
// and io.stdout, require through package.path, debug.traceback's levels)
// behaving as it does everywhere. Each directory is copied from the module
// cache, since the scripts write files next to themselves; the temporary
// files they make (os.tmpname, io.tmpfile) must all be gone after.
func TestGopherLuaScripts(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/yuin/gopher-lua").Output()
	if err != nil {
		t.Fatalf("locating gopher-lua's module: %v", err)
	}
	module := strings.TrimSpace(string(out))
	bin := buildCLI(t)
	for _, set := range gopherLuaScripts {
		work := t.TempDir()
		copyTree(t, filepath.Join(module, set.dir), work)
		for _, file := range set.files {
			t.Run(set.dir+"/"+file, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 4*bounded)
				defer cancel()
				tmp := t.TempDir()
				cmd := exec.CommandContext(ctx, bin, "run", "--stdlib", file)
				cmd.Dir = work
				cmd.Env = append(cleanEnv(), "TMPDIR="+tmp)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Errorf("subinterp run --stdlib %s: %v\nstdout:\n%s\nstderr:\n%s", file, err, stdout.String(), stderr.String())
				}
				if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
					t.Errorf("left in the temporary directory: %v, %v", left, err)
				}
			})
		}
	}
}

// copyTree copies the files under src to dst, writable, as they are laid
// out there.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
}
