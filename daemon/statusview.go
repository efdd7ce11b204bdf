package daemon

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/subinterp/subinterp/protocol"
	"github.com/subinterp/subinterp/supervisor"
)

// statusExitsShown is how many of the recent exits the page lists.
const statusExitsShown = 50

//go:embed status
var statusFiles embed.FS

var statusTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":      formatAgo,
	"bytes":    formatBytes,
	"duration": formatDuration,
	"limits":   formatLimits,
	"unbound":  formatUnbound,
}).ParseFS(statusFiles, "status/*.html"))

// assets serves the page's script and style, embedded in the binary.
func (st *statusServer) assets() http.Handler {
	sub, err := fs.Sub(statusFiles, "status")
	if err != nil {
		panic(err) // the embedded directory is there by construction
	}
	return http.StripPrefix("/assets/", http.FileServerFS(sub))
}

// statusView is one snapshot of the daemon, as the page shows it.
type statusView struct {
	Taken    time.Time
	Node     string
	Pid      int
	Socket   string
	Started  time.Time
	Uptime   time.Duration
	Protocol int
	Conns    int
	Totals   supervisor.Totals
	Actions  bool // the daemon has a token: the page may offer actions

	Interps []interpView
	Queues  []protocol.QueueEntry
	Exits   []exitView
	// ExitsTotal counts the exits remembered, of which Exits are the
	// newest.
	ExitsTotal int

	// rendered holds the sections, rendered once for every viewer.
	rendered map[string]string
}

// exitView is one worker exit's row.
type exitView struct {
	supervisor.Exit
	How  string // the exit's message, without the interpreter it names
	Then string // what became of the interpreter: restarted or ended
}

// interpView is one interpreter's row.
type interpView struct {
	supervisor.InterpStatus
	// Node is the cluster node the interpreter lives on: this daemon's,
	// empty outside a cluster.
	Node     string
	State    string
	Uptime   time.Duration
	RSSBytes int64
	CPU      time.Duration
	HasStats bool
}

func (s *Server) statusView(ctx context.Context) *statusView {
	now := time.Now()
	v := &statusView{
		Taken:    now,
		Node:     s.cfg.Node,
		Pid:      os.Getpid(),
		Socket:   s.cfg.Socket,
		Started:  s.started,
		Uptime:   now.Sub(s.started).Truncate(time.Second),
		Protocol: protocol.Version,
		Conns:    s.connCount(),
		Totals:   s.sup.Totals(),
		Actions:  len(s.token) > 0,
		Queues:   s.queueList(),
	}
	stats := make(map[int64]protocol.InterpInfo)
	for _, in := range s.list(ctx, true) {
		stats[in.ID] = in
	}
	for _, is := range s.sup.Statuses() {
		iv := interpView{InterpStatus: is, Node: s.cfg.Node, Uptime: now.Sub(is.Created).Truncate(time.Second)}
		switch {
		case is.Restarting:
			iv.State = "restarting"
		case is.Running:
			iv.State = "running"
		default:
			iv.State = "idle"
		}
		if in, ok := stats[is.ID]; ok && in.RSSBytes > 0 {
			iv.RSSBytes, iv.CPU, iv.HasStats = in.RSSBytes, time.Duration(in.CPUNanos), true
		}
		v.Interps = append(v.Interps, iv)
	}
	live := make(map[int64]bool, len(v.Interps))
	for _, iv := range v.Interps {
		live[iv.ID] = true
	}
	exits := s.sup.RecentExits()
	v.ExitsTotal = len(exits)
	for i, e := range exits[:min(len(exits), statusExitsShown)] {
		ev := exitView{Exit: e, How: strings.TrimPrefix(e.Err.Msg, fmt.Sprintf("interpreter %d: ", e.InterpreterID)), Then: "ended"}
		// A later exit of the same interpreter is earlier in the list:
		// only its newest exit can be followed by the worker now alive.
		if e.Restart && live[e.InterpreterID] {
			ev.Then = "restarted"
		}
		for _, later := range exits[:i] {
			if later.InterpreterID == e.InterpreterID && e.Restart {
				ev.Then = "restarted"
			}
		}
		v.Exits = append(v.Exits, ev)
	}
	return v
}

// sections renders the parts of the page that change, by element id, for
// the live view to swap in.
func (v *statusView) sections() map[string]string {
	out := make(map[string]string, 4)
	for _, name := range []string{"summary", "interpreters", "queues", "exits"} {
		var b bytes.Buffer
		if err := statusTemplates.ExecuteTemplate(&b, name, v); err != nil {
			b.Reset()
			b.WriteString(template.HTMLEscapeString(err.Error()))
		}
		out[name] = b.String()
	}
	return out
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for ; f >= unit && i < 3; i++ {
		f /= unit
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i])
}

// formatDuration is a duration as an operator reads it: 3h12m, 4m05s,
// 1.25s, 830ms.
func formatDuration(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%02dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	case d >= time.Second && d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return d.Round(time.Millisecond).String()
	}
}

// formatAgo says how long ago something happened, d before the snapshot.
func formatAgo(d time.Duration) string {
	if d < time.Second {
		return "just now"
	}
	return formatDuration(d.Truncate(time.Second)) + " ago"
}

// formatLimits lists the limits that are set, shortest first.
func formatLimits(l supervisor.Limits) string {
	var parts []string
	if l.MemoryBytes > 0 {
		parts = append(parts, "memory "+formatBytes(l.MemoryBytes))
	}
	if l.CPUPerCall > 0 {
		parts = append(parts, "CPU/call "+formatDuration(l.CPUPerCall))
	}
	if l.CPUTotal > 0 {
		parts = append(parts, "CPU total "+formatDuration(l.CPUTotal))
	}
	if l.CallTimeout > 0 {
		parts = append(parts, "timeout "+formatDuration(l.CallTimeout))
	}
	if l.OutputBytes > 0 {
		parts = append(parts, "output "+formatBytes(l.OutputBytes))
	}
	if l.Created > 0 {
		parts = append(parts, fmt.Sprintf("Lua creates ≤ %d", l.Created))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " · ")
}

func formatUnbound(m protocol.UnboundMode) string {
	switch m {
	case protocol.UnboundReplace:
		return "replace"
	case protocol.UnboundError:
		return "error"
	case protocol.UnboundRemove:
		return "remove"
	}
	return fmt.Sprintf("%d", m)
}
