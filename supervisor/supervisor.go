package supervisor

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/subinterp/subinterp/protocol"
)

// Supervisor owns a set of interpreters, each a worker process. All methods
// are safe for concurrent use.
type Supervisor struct {
	cfg Config

	mu      sync.RWMutex
	nextID  int64
	interps map[int64]*interp
	// creating counts the creates between being given an ID and having
	// the interpreter in interps or failing; lastID is the highest ID
	// given to one (see Census). Both move together: a census never
	// counts a create whose ID it cannot name.
	creating int
	lastID   int64
	closed   bool
	died     diedLog
	exits    exitLog
	// families counts, by the ID of an interpreter the host created, the
	// live interpreters created from Lua in it and in those created from
	// it; Limits.Created caps it.
	families map[int64]int

	qs    queueSet
	spare spares

	watchers sync.WaitGroup

	created   atomic.Int64 // interpreters created, for Totals
	crashed   atomic.Int64 // workers that ended on their own, for Totals
	restarted atomic.Int64 // workers a restart policy brought back, for Totals
}

// interp is the supervisor's record of one interpreter.
type interp struct {
	id   int64
	root int64 // the interpreter the host created that this one descends from; its own ID for that one
	// ancestors are the interpreters whose scripts created this one, its
	// creator last; none for one the host created.
	ancestors []int64
	created   time.Time
	limits    Limits
	stdout    io.Writer
	wcfg      protocol.WorkerConfig
	policy    *RestartPolicy
	hosting   Hosting
	proc      atomic.Pointer[process] // replaced when a restart policy respawns the worker

	callOut    atomic.Pointer[io.Writer] // output of the call in progress, when its caller asked for it (WithOutput)
	running    atomic.Bool               // a call (or Close) holds the interpreter
	restarting atomic.Bool               // a restart policy is bringing a new worker up
	closing    atomic.Bool               // Close or shutdown has begun: the end is ours, not a crash
	closeMu    sync.Mutex                // orders concurrent CloseInterpreters
	calls      atomic.Int64
	restarted  atomic.Int64 // workers the policy brought back
	// restartAsked marks a worker stopped by RestartWorker: its end is
	// no crash.
	restartAsked atomic.Bool

	restarts []time.Time // when the policy restarted the worker; only the watcher touches it
	bindMu   sync.Mutex
	bindings [][]byte // PrepareMain payloads, replayed into a restarted worker

	endOnce sync.Once
	gone    chan struct{} // closed when the interpreter no longer exists
}

// p is the interpreter's current worker.
func (it *interp) p() *process { return it.proc.Load() }

// CreateOptions configure one interpreter. The zero value takes the
// supervisor's defaults.
type CreateOptions struct {
	// Stdout receives the interpreter's print and io.write output; nil
	// means Config.Stdout.
	Stdout io.Writer
	// Stdlib opens the full Lua standard library.
	Stdlib bool
	// Limits override Config.Defaults field by field.
	Limits Limits
	// Restart, when set, respawns a worker that dies instead of ending the
	// interpreter.
	Restart *RestartPolicy
	// Hosting is what the host gives the interpreter's scripts.
	Hosting Hosting

	ancestors []int64 // for one created from Lua: see interp.ancestors
}

// Info describes a live interpreter.
type Info struct {
	ID      int64
	Pid     int
	Created time.Time
	Running bool
	Calls   int64
}

// New returns a Supervisor. No process starts until Create.
func New(cfg Config) (*Supervisor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Supervisor{cfg: cfg, interps: make(map[int64]*interp)}
	s.qs.lives = s.interpLives
	if s.stored() {
		s.qs.stored = make(map[int64]map[int64]struct{})
	}
	s.refillSpares()
	return s, nil
}

// notFound is the error for an ID with no live interpreter. One whose
// worker died not long ago says how, so that a caller who was not there
// when it happened learns more than that the ID means nothing.
func (s *Supervisor) notFound(id int64) *protocol.Error {
	msg := fmt.Sprintf("unrecognized interpreter ID %d", id)
	s.mu.RLock()
	why := s.died.why[id]
	s.mu.RUnlock()
	if why != "" {
		msg += " (its " + why + ")"
	}
	return &protocol.Error{Code: protocol.CodeNotFound, Msg: msg, InterpreterID: id}
}

// diedLog remembers how the last diedLogSize interpreters whose workers
// died ended. Guarded by Supervisor.mu.
type diedLog struct {
	why   map[int64]string
	order []int64
}

const diedLogSize = 1024

// recordDeath notes that interpreter id ended as exitErr says.
func (s *Supervisor) recordDeath(id int64, exitErr *protocol.Error) {
	why := strings.TrimPrefix(exitErr.Msg, fmt.Sprintf("interpreter %d: ", id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.died.why == nil {
		s.died.why = make(map[int64]string)
	}
	if len(s.died.order) == diedLogSize {
		delete(s.died.why, s.died.order[0])
		s.died.order = s.died.order[1:]
	}
	s.died.why[id] = why
	s.died.order = append(s.died.order, id)
}

// Create spawns a worker and returns the new interpreter's ID.
func (s *Supervisor) Create(ctx context.Context, opts CreateOptions) (int64, error) {
	return s.create(ctx, opts, 0)
}

// createFrom creates an interpreter for Lua code running in interpreter
// from. It inherits from's writer, library and limits, and counts against
// the Created limit of from's family: the interpreter the host created and
// every one created from it, however deep. So a script cannot start worker
// processes without end, nor shed its limits by running code in a child.
func (s *Supervisor) createFrom(ctx context.Context, from int64) (int64, error) {
	parent, err := s.get(from)
	if err != nil {
		return 0, err
	}
	root := parent.root
	s.mu.Lock()
	if max := parent.limits.Created; max > 0 && s.families[root] >= max {
		s.mu.Unlock()
		return 0, protocol.Errorf(protocol.CodeInterpreter,
			"interpreter creation failed: interpreter %d and those created from it already have %d interpreters alive that Lua created, the most allowed", root, max)
	}
	if s.families == nil {
		s.families = make(map[int64]int)
	}
	s.families[root]++
	s.mu.Unlock()
	ancestors := append(parent.ancestors[:len(parent.ancestors):len(parent.ancestors)], parent.id)
	id, err := s.create(ctx, CreateOptions{Stdout: parent.stdout, Stdlib: parent.wcfg.Stdlib, Limits: parent.limits, Hosting: parent.hosting, ancestors: ancestors}, root)
	if err != nil {
		s.leaveFamily(root)
	}
	return id, err
}

// leaveFamily counts one interpreter created from Lua in family root less.
func (s *Supervisor) leaveFamily(root int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.families[root]--; s.families[root] <= 0 {
		delete(s.families, root)
	}
}

// create makes an interpreter of family root: 0 for one the host asked
// for, which heads a family of its own.
func (s *Supervisor) create(ctx context.Context, opts CreateOptions, root int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, protocol.AsError(err)
	}
	id, err := s.newID(ctx)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.creating++
	s.lastID = max(s.lastID, id)
	s.mu.Unlock()
	registered := false
	defer func() {
		if !registered {
			s.mu.Lock()
			s.creating--
			s.mu.Unlock()
		}
	}()

	if root == 0 {
		root = id
	}
	it := &interp{id: id, root: root, created: time.Now(), limits: opts.Limits.merge(s.cfg.Defaults), stdout: opts.Stdout, policy: opts.Restart, hosting: opts.Hosting, ancestors: opts.ancestors, gone: make(chan struct{})}
	if it.stdout == nil {
		it.stdout = s.cfg.Stdout
	}
	it.wcfg = protocol.WorkerConfig{
		InterpreterID: id,
		Stdlib:        opts.Stdlib,
		MemoryLimit:   it.limits.MemoryBytes,
		CPULimitNs:    int64(it.limits.CPUPerCall),
		CPUTotalNs:    int64(it.limits.CPUTotal),
		OutputLimit:   it.limits.OutputBytes,
	}
	it.wcfg.HostFuncs, it.wcfg.Modules = it.hosting.workerNames()
	it.hosting.hold()
	proc, err := s.spawn(ctx, it)
	if err != nil {
		it.hosting.release()
		return 0, creationFailed(err)
	}
	it.proc.Store(proc)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		proc.stop()
		it.hosting.release()
		return 0, protocol.Errorf(protocol.CodeInterpreter, "interpreter creation failed: the supervisor is closed")
	}
	s.interps[id] = it
	s.creating--
	registered = true
	s.watchers.Add(1)
	s.mu.Unlock()
	s.created.Add(1)
	s.watch(it)
	return id, nil
}

// newID gives the next interpreter's ID, from Config.NextID when set.
func (s *Supervisor) newID(ctx context.Context) (int64, error) {
	s.mu.Lock()
	closed := s.closed
	if !closed && s.cfg.NextID == nil {
		s.nextID++
		id := s.nextID
		s.mu.Unlock()
		return id, nil
	}
	s.mu.Unlock()
	if closed {
		return 0, protocol.Errorf(protocol.CodeInterpreter, "interpreter creation failed: the supervisor is closed")
	}
	id, err := s.cfg.NextID(ctx)
	if err != nil {
		return 0, &protocol.Error{Code: protocol.CodeInterpreter, Msg: "interpreter creation failed: no ID: " + err.Error()}
	}
	return id, nil
}

// output writes one NotifyOutput body of the call in progress. It runs on
// the caller's goroutine as the call channel delivers it, so all of a
// call's output is written before the call returns.
func (it *interp) output(body []byte) {
	var b []byte
	if err := msgpack.Unmarshal(body, &b); err != nil || len(b) == 0 {
		return
	}
	w := it.stdout
	if out := it.callOut.Load(); out != nil {
		w = *out
	}
	_, _ = w.Write(b)
}

type outputKey struct{}

// WithOutput returns a context under which a call's output goes to w
// instead of the interpreter's own writer: a daemon sends each caller the
// output of its own calls.
func WithOutput(ctx context.Context, w io.Writer) context.Context {
	return context.WithValue(ctx, outputKey{}, w)
}

// watch makes the end of it's current worker the end of it, or, under a
// restart policy, the start of a new worker. Nothing waits meanwhile: the
// worker's session sets it off as it ends.
func (s *Supervisor) watch(it *interp) {
	p := it.p()
	p.whenEnded(func() { s.workerEnded(it, p) })
}

// workerEnded handles the end of p, it's worker.
func (s *Supervisor) workerEnded(it *interp, p *process) {
	if it.closing.Load() {
		p.markDead(nil)
		s.watchers.Done()
		return
	}
	exitErr := p.exitError(it.id)
	if it.limits.MemoryBytes > 0 && exitErr.Signal == "" && diedOutOfMemory(exitErr.ExitCode, p.stderr) {
		// The kernel's hard limit ended it (RLIMIT_AS fails the Go
		// runtime's next allocation, which it reports and dies of).
		exitErr.Cause = protocol.CodeMemoryLimit
		exitErr.Msg += " (memory limit exceeded)"
	}
	if exitErr.Signal == syscall.SIGXCPU.String() {
		exitErr.Cause = protocol.CodeCPULimit // the kernel's RLIMIT_CPU
		exitErr.Msg += " (CPU time limit exceeded)"
	}
	if it.restartAsked.Swap(false) {
		exitErr.Msg += " (restart asked for)"
	} else {
		s.crashed.Add(1)
	}
	s.recordExit(it, p.pid(), exitErr)
	s.cfg.Logger.Warn("worker ended", "interpreter", it.id, "error", exitErr.Msg)
	if it.policy == nil {
		// Gone before the failed call hears of it: whoever it tells
		// finds the interpreter gone.
		s.recordDeath(it.id, exitErr)
		s.end(it)
		p.markDead(exitErr)
		s.watchers.Done()
		return
	}
	it.restarting.Store(true) // calls fail with "already running" meanwhile
	p.markDead(exitErr)
	s.qs.unbind(it.id) // the worker's items are gone with it
	if s.restart(it, exitErr) {
		it.restarted.Add(1)
		s.watch(it)
		return
	}
	s.recordDeath(it.id, exitErr)
	s.end(it)
	s.watchers.Done()
}

// end removes it from the supervisor, once.
func (s *Supervisor) end(it *interp) {
	it.endOnce.Do(func() {
		s.mu.Lock()
		delete(s.interps, it.id)
		s.mu.Unlock()
		if it.root != it.id {
			s.leaveFamily(it.root)
		}
		s.qs.unbind(it.id)
		s.qs.releaseHolder(it.id)
		it.hosting.release()
		close(it.gone)
	})
}

func (s *Supervisor) get(id int64) (*interp, error) {
	if id < 0 {
		return nil, protocol.Errorf(protocol.CodeInvalidArgument, "interpreter ID must be a non-negative int, got %d", id)
	}
	s.mu.RLock()
	it := s.interps[id]
	s.mu.RUnlock()
	if it == nil || it.closing.Load() {
		return nil, s.notFound(id)
	}
	return it, nil
}

// Exists reports whether id names a live interpreter.
func (s *Supervisor) Exists(id int64) bool {
	_, err := s.get(id)
	return err == nil
}

// List describes the live interpreters, oldest first.
func (s *Supervisor) List() []Info {
	s.mu.RLock()
	infos := make([]Info, 0, len(s.interps))
	for _, it := range s.interps {
		if it.closing.Load() {
			continue
		}
		infos = append(infos, it.info())
	}
	s.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	return infos
}

// IsRunning reports whether a call is in progress in id.
func (s *Supervisor) IsRunning(id int64) (bool, error) {
	it, err := s.get(id)
	if err != nil {
		return false, err
	}
	return it.running.Load() || it.restarting.Load(), nil
}

// Pid returns the process id of id's worker.
func (s *Supervisor) Pid(id int64) (int, error) {
	it, err := s.get(id)
	if err != nil {
		return 0, err
	}
	return it.p().pid(), nil
}

// CloseInterpreter ends id and reaps its worker. It fails with
// CodeAlreadyRunning while a call is in progress.
func (s *Supervisor) CloseInterpreter(id int64) error {
	it, err := s.get(id)
	if err != nil {
		return err
	}
	// Closes of one interpreter take turns: a Close that comes second
	// finds it closing, not running.
	it.closeMu.Lock()
	if it.closing.Load() {
		it.closeMu.Unlock()
		return s.notFound(id)
	}
	if !it.running.CompareAndSwap(false, true) {
		it.closeMu.Unlock()
		return alreadyRunning(id)
	}
	// running stays set: nothing may start in a closing interpreter.
	closing := it.closing.CompareAndSwap(false, true)
	it.closeMu.Unlock()
	if !closing {
		return s.notFound(id)
	}
	s.end(it)
	it.p().stop()
	return nil
}

// Close ends every interpreter, running or not, and reaps their workers.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.endAll()
	s.stopSpares()
	s.qs.closeAll()
	s.watchers.Wait()
	return nil
}

// CloseAll ends every interpreter, running or not, and reaps their
// workers; unlike Close, the supervisor goes on taking new ones. A cluster
// node cut off from its cluster calls it, so that nothing the cluster
// counts as lost runs on. Calls in progress fail as if their interpreter
// had been closed.
func (s *Supervisor) CloseAll() int {
	return s.endAll()
}

// endAll ends every interpreter and returns how many it ended.
func (s *Supervisor) endAll() int {
	s.mu.Lock()
	all := make([]*interp, 0, len(s.interps))
	for _, it := range s.interps {
		all = append(all, it)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	n := 0
	for _, it := range all {
		if !it.closing.CompareAndSwap(false, true) {
			continue
		}
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.end(it)
			it.p().stop()
		}()
	}
	wg.Wait()
	return n
}

func alreadyRunning(id int64) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeAlreadyRunning, Msg: fmt.Sprintf("interpreter %d already running", id), InterpreterID: id}
}

// Count is how many interpreters are alive.
func (s *Supervisor) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.interps)
}

// Census is Count with the creates in progress counted too, and the
// highest ID given to an interpreter so far. Taken at one moment, it says
// of every interpreter with an ID up to lastID that it is counted, if it
// lives: one who created interpreters elsewhere can tell which of them a
// census includes, where IDs only grow.
func (s *Supervisor) Census() (interpreters int, lastID int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.interps) + s.creating, s.lastID
}
