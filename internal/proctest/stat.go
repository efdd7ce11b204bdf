package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat reads /proc/pid/stat: the process's parent, its command name and its
// one-letter state ("Z" for a zombie). ok is false when the process is gone
// or the file cannot be parsed.
func Stat(pid int) (ppid int, comm, state string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", false
	}
	s := string(b)
	// The command name may hold spaces and parentheses: it ends at the last ')'.
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", "", false
	}
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 2 {
		return 0, "", "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", "", false
	}
	return ppid, s[open+1 : closing], fields[0], true
}

// Describe names process pid for a failure message: its command, state and
// parent, or that it is gone.
func Describe(pid int) string {
	ppid, comm, state, ok := Stat(pid)
	if !ok {
		return fmt.Sprintf("%d (gone)", pid)
	}
	return fmt.Sprintf("%d (%s) state %s parent %d", pid, comm, state, ppid)
}

// Children lists the pids whose parent is this process, zombies included.
func Children() []int {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == self {
			continue
		}
		if ppid, _, _, ok := Stat(p); ok && ppid == self {
			out = append(out, p)
		}
	}
	return out
}

// Orphans lists the live processes other than this one reparented to init,
// leaving out zombies: where a worker whose host died without ending it
// ends up.
func Orphans() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == self {
			continue
		}
		if ppid, _, state, ok := Stat(p); ok && ppid == 1 && state != "Z" {
			out = append(out, p)
		}
	}
	return out
}
