package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PrivateBytes is a process's private memory, Private_Clean plus
// Private_Dirty of its smaps_rollup: the pages no other process maps, so
// what ending it would give back (its page tables and kernel buffers aside).
func PrivateBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	var kb int64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "Private_Clean:" || f[0] == "Private_Dirty:") {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/smaps_rollup: %q: %w", pid, line, err)
			}
			kb += n
		}
	}
	return kb << 10, nil
}
