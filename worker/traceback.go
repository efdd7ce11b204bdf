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
	frames := stackFrames(L)
	if len(frames) > 0 {
		frames = frames[1:] // the error function itself
	}
	var lines []string
	leading := true
	for i, f := range frames {
		if f.fn == nil || f.fn == entry {
			continue
		}
		if f.fn.IsG && leading {
			continue
		}
		leading = false
		name := ""
		if i+1 < len(frames) && frames[i+1].fn == entry {
			name = entryName
		}
		lines = append(lines, "\t"+describeFrame(L, f, i+1 == len(frames), name))
		if !f.fn.IsG && f.tailCalls > 0 {
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

// stackFrame is one call frame of a traceback.
type stackFrame struct {
	d         *lua.Debug
	fn        *lua.LFunction
	tailCalls int
}

// stackFrames lists L's call frames, innermost first. With the upvalue
// fix's layout it follows the frames' parent links, which reaches every
// frame once; otherwise it asks GetStack level by level (quadratic, and
// blind below a frame with tail calls, but portable).
func stackFrames(L *lua.LState) []stackFrame {
	var frames []stackFrame
	if upvalueFix {
		for f := currentFrame(L); f != nil; f = frameParent(f) {
			fn := frameFn(f)
			tail := 0
			if fn != nil && !fn.IsG {
				tail = frameTailCalls(f)
			}
			frames = append(frames, stackFrame{d: frameDebug(f), fn: fn, tailCalls: tail})
		}
		return frames
	}
	for level := 0; ; level++ {
		d, ok := L.GetStack(level)
		if !ok {
			return frames
		}
		v, err := L.GetInfo("Sf", d, lua.LNil)
		if err != nil {
			return frames
		}
		fn, _ := v.(*lua.LFunction)
		tail := 0
		if d.What == "tail" {
			tail = 1 // how many, GetStack does not say
		}
		frames = append(frames, stackFrame{d: d, fn: fn, tailCalls: tail})
		if d.What == "main" {
			// The outermost frame: GetStack answers it again for every
			// level that tail calls pushed past it.
			return frames
		}
	}
}

// describeFrame renders one frame; outermost says it has no caller; name,
// when set, is how the caller named the function.
func describeFrame(L *lua.LState, f stackFrame, outermost bool, name string) string {
	d := f.d
	if _, err := L.GetInfo("nSl", d, lua.LNil); err != nil {
		return "?"
	}
	if name == "" {
		name = d.Name
	}
	if f.fn.IsG {
		if name == "" || name[0] == '(' || name[0] == '<' {
			return "[G]: ?"
		}
		return "[G]: in function '" + name + "'"
	}
	where := d.Source + ":" + strconv.Itoa(d.CurrentLine) + ": in "
	switch {
	case outermost && name == "main chunk":
		return where + "main chunk"
	case outermost:
		return where + "function <" + d.Source + ":" + strconv.Itoa(d.LineDefined) + ">"
	case name == "" || name[0] == '(' || name[0] == '<':
		return where + "function <" + d.Source + ":" + strconv.Itoa(d.LineDefined) + ">"
	}
	return where + "function '" + name + "'"
}

// debugTraceback replaces debug.traceback for trusted scripts: gopher-lua's
// own rendering and levels, without the frames that are the worker's (the
// error function of every protected call, the entry a Call runs its target
// from), which plain gopher-lua does not have. So a level counts the same
// frames as there: debug.traceback("msg", 10) in an xpcall handler shows
// what it shows under plain gopher-lua.
func (vm *VM) debugTraceback(L *lua.LState) int {
	msg := ""
	level := L.OptInt(2, 1)
	ls := L
	if L.GetTop() > 0 {
		switch v := L.Get(1).(type) {
		case lua.LString:
			msg = string(v)
		case *lua.LState:
			ls = v
		}
	}
	var lines []string
	for _, f := range stackFrames(ls) {
		if f.fn == nil || f.fn == vm.errfunc || f.fn == vm.entry {
			continue
		}
		if _, err := ls.GetInfo("nSl", f.d, lua.LNil); err != nil {
			continue
		}
		where := "[G]:"
		if !f.fn.IsG {
			where = f.d.Source + ":" + strconv.Itoa(f.d.CurrentLine) + ":"
		}
		name := f.d.Name
		switch {
		case f.d.What == "main":
		case name != "" && name[0] != '(' && name[0] != '<':
			name = "function '" + name + "'"
		default:
			name = "function " + name
		}
		lines = append(lines, "\t"+where+" in "+name)
		for range f.tailCalls {
			lines = append(lines, "\t(tailcall): ?")
		}
	}
	lines = append(lines, "\t[G]: ?")
	lines = lines[max(0, min(level, len(lines))):]
	if len(lines) > 20 {
		lines = append(append(lines[:7:7], "\t..."), lines[len(lines)-7:]...)
	}
	tb := "stack traceback:\n" + strings.Join(lines, "\n")
	tb = strings.TrimSpace(tb)
	if msg != "" {
		tb = msg + "\n" + tb
	}
	L.Push(lua.LString(tb))
	return 1
}
