package worker

import (
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

const (
	// tracebackHead and tracebackTail bound a traceback: the frames nearest
	// the error and those nearest the entry point are the ones worth reading.
	tracebackHead = 10
	tracebackTail = 10
)

// traceback renders L's call stack below the running error function, in
// C Lua's style. It walks frames through their parent links, so it is
// linear in the depth (gopher-lua's own traceback is quadratic) and it
// prints one line for any number of tail calls (gopher-lua prints one per
// tail call, which takes seconds after an endless tail-call loop). Leading
// Go frames (error, assert) and entry, the Go function a Call runs its
// target from, are left out; the target's frame is called entryName.
func traceback(L *lua.LState, entry *lua.LFunction, entryName string) string {
	var lines []string
	leading := true
	f := currentFrame(L)
	if f != nil {
		f = frameParent(f) // the error function itself
	}
	for ; f != nil; f = frameParent(f) {
		fn := frameFn(f)
		if fn == nil || fn == entry {
			continue
		}
		if fn.IsG && leading {
			continue
		}
		leading = false
		name := ""
		if p := frameParent(f); p != nil && frameFn(p) == entry {
			name = entryName
		}
		lines = append(lines, "\t"+describeFrame(L, f, fn, name))
		if !fn.IsG && frameTailCalls(f) > 0 {
			lines = append(lines, "\t(...tail calls...)")
		}
	}
	if len(lines) > tracebackHead+tracebackTail+1 {
		n := len(lines) - tracebackHead - tracebackTail
		kept := append(lines[:tracebackHead:tracebackHead], "\t...\t("+strconv.Itoa(n)+" levels skipped)")
		lines = append(kept, lines[len(lines)-tracebackTail:]...)
	}
	var b strings.Builder
	b.WriteString("stack traceback:")
	for _, l := range lines {
		b.WriteByte('\n')
		b.WriteString(l)
	}
	return b.String()
}

// describeFrame renders one frame; name, when set, is how the caller
// named the function.
func describeFrame(L *lua.LState, f frame, fn *lua.LFunction, name string) string {
	d := frameDebug(f)
	if _, err := L.GetInfo("nSl", d, lua.LNil); err != nil {
		return "?"
	}
	if name == "" {
		name = d.Name
	}
	if fn.IsG {
		if name == "" || name[0] == '(' || name[0] == '<' {
			return "[G]: ?"
		}
		return "[G]: in function '" + name + "'"
	}
	where := d.Source + ":" + strconv.Itoa(d.CurrentLine) + ": in "
	switch {
	case frameParent(f) == nil && name == "main chunk":
		return where + "main chunk"
	case frameParent(f) == nil:
		return where + "function <" + d.Source + ":" + strconv.Itoa(d.LineDefined) + ">"
	case name == "" || name[0] == '(' || name[0] == '<':
		return where + "function <" + d.Source + ":" + strconv.Itoa(d.LineDefined) + ">"
	}
	return where + "function '" + name + "'"
}
