package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/subinterp/subinterp/protocol"
)

const (
	// statusInterval is how often the status page's live view refreshes,
	// and how long one snapshot of the daemon serves every viewer.
	statusInterval = time.Second
	// statusStopWait bounds the status server's shutdown.
	statusStopWait = time.Second
	// tokenHeader carries the daemon's token on the status page's actions.
	// A header, not a cookie: a browser sends no custom header across
	// sites without a CORS preflight, which the daemon never grants.
	tokenHeader = "X-Subinterp-Token"
)

// ErrStatusNotLoopback is returned by Listen for a status page address that
// is not loopback when no TLS is configured.
var ErrStatusNotLoopback = errors.New("the status page serves a non-loopback address only over TLS")

// statusServer is the daemon's status page: an HTML view of its
// interpreters, queues and worker exits that updates itself, and the
// actions close and restart.
type statusServer struct {
	s   *Server
	l   net.Listener
	tls bool

	mu     sync.Mutex
	snap   *statusView
	at     time.Time
	bumped chan struct{} // closed and replaced when an action changed something
}

// listenStatus opens the status page's listener, or nothing without
// HTTPAddr. Without TLS only a loopback address is served: the page needs
// no login to read, and its actions trust the token alone.
func (s *Server) listenStatus() error {
	addr := s.cfg.HTTPAddr
	if addr == "" {
		return nil
	}
	if s.cfg.TLS == nil {
		if err := checkLoopback(addr); err != nil {
			return err
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for the status page on %s: %w", addr, err)
	}
	// A name such as localhost is checked again as what it resolved to.
	if ta, ok := l.Addr().(*net.TCPAddr); ok && s.cfg.TLS == nil && !ta.IP.IsLoopback() {
		l.Close()
		return fmt.Errorf("%w: %s resolved to %s", ErrStatusNotLoopback, addr, ta.IP)
	}
	st := &statusServer{s: s, l: l, bumped: make(chan struct{})}
	if s.cfg.TLS != nil {
		tcfg := s.cfg.TLS.Clone()
		if tcfg.MinVersion == 0 {
			tcfg.MinVersion = tls.VersionTLS12
		}
		st.l, st.tls = tls.NewListener(l, tcfg), true
	}
	s.status = st
	return nil
}

// checkLoopback refuses a host:port whose host is not a loopback address
// or localhost: an empty host means every interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("status page address %q: %w", addr, err)
	}
	if isLoopbackHost(host) {
		return nil
	}
	if host == "" {
		host = "every interface"
	}
	return fmt.Errorf("%w: %s is %s; serve it on 127.0.0.1 or [::1], or give a TLS certificate and key", ErrStatusNotLoopback, addr, host)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HTTPAddr is the address the status page is served on, or nil.
func (s *Server) HTTPAddr() net.Addr {
	if s.status == nil {
		return nil
	}
	return s.status.l.Addr()
}

// serveStatus serves the status page until the returned stop is called.
func (s *Server) serveStatus(wg *sync.WaitGroup) (stop func()) {
	st := s.status
	if st == nil {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", st.page)
	mux.HandleFunc("GET /events", st.events)
	mux.Handle("GET /assets/", st.assets())
	mux.HandleFunc("POST /interpreters/{id}/close", st.action(st.closeInterp))
	mux.HandleFunc("POST /interpreters/{id}/restart", st.action(st.restartInterp))
	if s.cfg.MetricsAddr != "" && s.cfg.MetricsAddr == s.cfg.HTTPAddr {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	}
	srv := &http.Server{
		Handler:           st.guard(mux),
		ReadHeaderTimeout: 10 * time.Second,
		// The live view ends as the shutdown begins.
		BaseContext: func(net.Listener) context.Context { return s.drainCtx },
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(st.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("status page server failed", "error", err)
		}
	}()
	s.log.Info("status page", "url", st.url(), "actions", len(s.token) > 0)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), statusStopWait)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

func (st *statusServer) url() string {
	scheme := "http"
	if st.tls {
		scheme = "https"
	}
	return scheme + "://" + st.l.Addr().String() + "/"
}

// guard sets the headers every answer carries, and refuses a request whose
// Host is not loopback on a plain-HTTP page: a page of another site whose
// name was made to resolve to 127.0.0.1 (DNS rebinding) cannot read it.
func (st *statusServer) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Nothing but the daemon's own script and style, no frames, no
		// forms posted anywhere.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if !st.tls {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			if !isLoopbackHost(strings.Trim(host, "[]")) {
				http.Error(w, "unknown host "+strconv.Quote(r.Host)+": the status page answers to a loopback address only", http.StatusMisdirectedRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// page serves the status page, filled with a fresh snapshot: it reads
// without script, which only keeps it up to date and runs the actions.
func (st *statusServer) page(w http.ResponseWriter, r *http.Request) {
	v := st.snapshot()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusTemplates.ExecuteTemplate(w, "page", v); err != nil {
		st.s.log.Debug("status page write failed", "error", err)
	}
}

// events streams the page's sections as server-sent events: all of them at
// once, then those that changed, checked once per statusInterval and after
// every action, until the viewer leaves or the daemon shuts down.
func (st *statusServer) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(statusInterval)
	defer tick.Stop()
	sent := make(map[string]string)
	for {
		st.mu.Lock()
		bumped := st.bumped
		st.mu.Unlock()
		changed := make(map[string]string)
		for id, html := range st.snapshot().rendered {
			if sent[id] != html {
				changed[id], sent[id] = html, html
			}
		}
		if len(changed) > 0 {
			b, err := json.Marshal(changed)
			if err != nil {
				return
			}
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		case <-bumped:
		}
	}
}

// snapshot returns the daemon's state, taken anew at most once per
// statusInterval or action: every viewer shares it, so viewers add no
// load on the workers. It is taken under the daemon's context, not the
// viewer's: a viewer leaving midway spoils it for no one.
func (st *statusServer) snapshot() *statusView {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.snap != nil && time.Since(st.at) < statusInterval {
		return st.snap
	}
	v := st.s.statusView(st.s.drainCtx)
	v.rendered = v.sections()
	st.snap, st.at = v, time.Now()
	return st.snap
}

// bump drops the snapshot and wakes every live view: an action changed
// the state.
func (st *statusServer) bump() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.snap = nil
	close(st.bumped)
	st.bumped = make(chan struct{})
}

// action wraps an action: it needs the daemon's token, in tokenHeader, and
// a request from the page itself. Each refusal says why.
func (st *statusServer) action(do func(id int64) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := st.sameOrigin(r); err != nil {
			writeAction(w, http.StatusForbidden, "", err)
			return
		}
		if len(st.s.token) == 0 {
			writeAction(w, http.StatusForbidden, "", errors.New("actions are off: the daemon has no token (serve --token-file)"))
			return
		}
		if !st.s.tokenOK(r.Header.Get(tokenHeader)) {
			writeAction(w, http.StatusForbidden, "", errors.New("missing or wrong token"))
			return
		}
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id < 0 {
			writeAction(w, http.StatusBadRequest, "", fmt.Errorf("interpreter ID %q: want a non-negative integer", r.PathValue("id")))
			return
		}
		if !st.s.enter() {
			writeAction(w, http.StatusServiceUnavailable, "", errors.New("the daemon is shutting down"))
			return
		}
		done, err := do(id)
		st.s.leave()
		if err == nil {
			st.s.log.Info("status page action", "done", done, "remote", r.RemoteAddr)
			st.bump()
		}
		writeAction(w, actionStatus(err), done, err)
	}
}

// sameOrigin refuses a request another site made: a browser says where a
// request comes from in Sec-Fetch-Site and Origin. A client that is not
// a browser sends neither, and has only its token to show.
func (st *statusServer) sameOrigin(r *http.Request) error {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("a %s request: actions are taken from the status page itself", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		scheme := "http://"
		if st.tls {
			scheme = "https://"
		}
		if origin != scheme+r.Host {
			return fmt.Errorf("a request from %s: actions are taken from the status page itself", origin)
		}
	}
	return nil
}

func (st *statusServer) closeInterp(id int64) (string, error) {
	if err := st.s.sup.CloseInterpreter(id); err != nil {
		return "", err
	}
	return fmt.Sprintf("closed interpreter %d", id), nil
}

func (st *statusServer) restartInterp(id int64) (string, error) {
	if err := st.s.sup.RestartWorker(id); err != nil {
		return "", err
	}
	return fmt.Sprintf("restarting interpreter %d", id), nil
}

// actionResult is an action's answer: what it did, or why not.
type actionResult struct {
	Done  string `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

func writeAction(w http.ResponseWriter, status int, done string, err error) {
	res := actionResult{Done: done}
	if err != nil {
		res.Error = err.Error()
		var pe *protocol.Error
		if errors.As(err, &pe) {
			res.Code = string(pe.Code)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(res)
}

// actionStatus maps an action's error to its HTTP status.
func actionStatus(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		return http.StatusInternalServerError
	}
	switch pe.Code {
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeAlreadyRunning:
		return http.StatusConflict
	case protocol.CodeInvalidArgument:
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}
