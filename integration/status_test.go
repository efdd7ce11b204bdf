package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// statusClient bounds every request of the status page tests.
var statusClient = &http.Client{Timeout: bounded}

// statusAction posts an action to the status page the way its script
// does, with headers changed by set, and returns the status and answer.
func statusAction(t *testing.T, base, path string, set func(http.Header)) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", strings.TrimSuffix(base, "/"))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if set != nil {
		set(req.Header)
	}
	res, err := statusClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %v", path, err)
	}
	return res.StatusCode, body
}

// TestStatusPageGuards: the status page loads nothing from elsewhere,
// answers only to a loopback name, and takes an action only with the
// daemon's token from the page itself.
func TestStatusPageGuards(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemon.Config{HTTPAddr: "127.0.0.1:0", TokenFile: tokenFile})
	rt := d.dial(t)
	it := create(t, rt)
	base := "http://" + d.HTTPAddr().String() + "/"
	closePath := "interpreters/" + strconv.FormatInt(it.ID(), 10) + "/close"

	res, err := statusClient.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if !strings.Contains(string(html), `id="interp-`+strconv.FormatInt(it.ID(), 10)+`"`) {
		t.Errorf("the page does not list interpreter %d:\n%s", it.ID(), html)
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(html), -1) {
		if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
			t.Errorf("the page refers to %q, not to the daemon itself", m[1])
		}
	}

	req, _ := http.NewRequest(http.MethodGet, base, nil)
	req.Host = "rebound.example:80"
	if res, err := statusClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		res.Body.Close()
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET with Host %s: %s, want 421", req.Host, res.Status)
		}
	}

	for _, tc := range []struct {
		name string
		set  func(http.Header)
		want string
	}{
		{"no token", nil, "token"},
		{"a wrong token", func(h http.Header) { h.Set("X-Subinterp-Token", "not-it") }, "token"},
		{"another site's request", func(h http.Header) {
			h.Set("X-Subinterp-Token", "the-token")
			h.Set("Sec-Fetch-Site", "cross-site")
		}, "cross-site"},
		{"another origin", func(h http.Header) {
			h.Set("X-Subinterp-Token", "the-token")
			h.Set("Origin", "http://elsewhere.example")
		}, "elsewhere.example"},
	} {
		code, body := statusAction(t, base, closePath, tc.set)
		if code != http.StatusForbidden || !strings.Contains(body["error"], tc.want) {
			t.Errorf("close with %s: %d %v, want 403 and an error about %s", tc.name, code, body, tc.want)
		}
	}
	if _, err := it.Pid(); err != nil {
		t.Fatalf("a refused close ended interpreter %d: %v", it.ID(), err)
	}

	withToken := func(h http.Header) { h.Set("X-Subinterp-Token", "the-token") }
	code, body := statusAction(t, base, "interpreters/"+strconv.FormatInt(it.ID(), 10)+"/restart", withToken)
	if code != http.StatusBadRequest || body["code"] != "invalid_argument" || !strings.Contains(body["error"], "no restart policy") {
		t.Errorf("restart without a restart policy: %d %v, want 400 invalid_argument", code, body)
	}
	code, body = statusAction(t, base, closePath, withToken)
	if code != http.StatusOK || body["done"] != "closed interpreter "+strconv.FormatInt(it.ID(), 10) {
		t.Errorf("close with the token: %d %v", code, body)
	}
	if _, err := it.Pid(); !errors.Is(err, interpreters.ErrInterpreterNotFound) {
		t.Errorf("interpreter %d after close: %v, want ErrInterpreterNotFound", it.ID(), err)
	}
	code, body = statusAction(t, base, closePath, withToken)
	if code != http.StatusNotFound || body["code"] != "not_found" {
		t.Errorf("closing it again: %d %v, want 404 not_found", code, body)
	}
}

// TestStatusPageSettings: a non-loopback address needs TLS; without a
// token the page is read-only; one address serves the page and metrics;
// a cluster node's interpreters show its name.
func TestStatusPageSettings(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		_, err := daemon.Listen(daemon.Config{Socket: filepath.Join(socketDir(t), "d.sock"), HTTPAddr: addr})
		if !errors.Is(err, daemon.ErrStatusNotLoopback) {
			t.Errorf("HTTPAddr %s without TLS: %v, want ErrStatusNotLoopback", addr, err)
		}
	}

	byName := startDaemon(t, daemon.Config{HTTPAddr: "localhost:0"})
	_, port, _ := net.SplitHostPort(byName.HTTPAddr().String())
	if res, err := statusClient.Get("http://localhost:" + port + "/"); err != nil {
		t.Errorf("the page on localhost: %v", err)
	} else if res.Body.Close(); res.StatusCode != http.StatusOK {
		t.Errorf("the page on localhost: %s", res.Status)
	}

	d := startDaemon(t, daemon.Config{HTTPAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Node: "node-a"})
	if d.MetricsAddr() == nil || d.MetricsAddr().String() != d.HTTPAddr().String() {
		t.Fatalf("metrics on %v, the status page on %v: want one listener", d.MetricsAddr(), d.HTTPAddr())
	}
	base := "http://" + d.HTTPAddr().String() + "/"
	res, err := statusClient.Get(base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "subinterp_interpreters_alive") {
		t.Errorf("GET /metrics on the shared address: %s\n%.300s", res.Status, b)
	}

	it := create(t, d.dial(t))
	code, body := statusAction(t, base, "interpreters/"+strconv.FormatInt(it.ID(), 10)+"/close", func(h http.Header) { h.Set("X-Subinterp-Token", "") })
	if code != http.StatusForbidden || !strings.Contains(body["error"], "no token") {
		t.Errorf("close on a daemon without a token: %d %v, want 403 saying actions are off", code, body)
	}

	// The live view's first event already lists the interpreter.
	res, err = statusClient.Get(base + "events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("events Content-Type %q", ct)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &sections); err != nil {
		t.Fatalf("first event %q: %v", line, err)
	}
	if !strings.Contains(sections["interpreters"], `id="interp-`+strconv.FormatInt(it.ID(), 10)+`"`) {
		t.Errorf("the first event does not list interpreter %d: %v", it.ID(), sections["interpreters"])
	}
	if !strings.Contains(sections["interpreters"], `<td data-label="Node">node-a</td>`) {
		t.Errorf("the interpreter's row does not name its node, node-a: %v", sections["interpreters"])
	}
}

// TestStatusPageExits: a worker that dies over its memory limit is listed
// among the recent exits with its cause and its stderr, and the
// interpreter as ended.
func TestStatusPageExits(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, daemon.Config{HTTPAddr: "127.0.0.1:0"})
	it := create(t, d.dial(t), interpreters.WithMemoryLimit(64<<20))
	pid, err := it.Pid()
	if err != nil {
		t.Fatal(err)
	}
	var wee *interpreters.WorkerExitError
	execErr := it.Exec(isoJoinBomb)
	if !errors.As(execErr, &wee) {
		t.Fatalf("the memory bomb: %v, want a *WorkerExitError", execErr)
	}

	res, err := statusClient.Get("http://" + d.HTTPAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	row := regexp.MustCompile(`(?s)<tr data-interp="` + strconv.FormatInt(it.ID(), 10) + `" data-pid="` + strconv.Itoa(pid) + `">.*?</tr>`).Find(page)
	if row == nil {
		t.Fatalf("no exit of interpreter %d (pid %d) on the page:\n%s", it.ID(), pid, page)
	}
	wants := []string{"then-ended"}
	if wee.StderrTail != "" {
		wants = append(wants, "<details")
	}
	// Whether the supervisor tells this death was the memory limit's is
	// the supervisor's to test; the page must say what it was told.
	if errors.Is(execErr, interpreters.ErrMemoryLimit) != strings.Contains(string(row), "memory_limit") {
		t.Errorf("the call's error (%v) and the exit's row disagree on the memory limit:\n%s", errors.Is(execErr, interpreters.ErrMemoryLimit), row)
	}
	for _, want := range wants {
		if !strings.Contains(string(row), want) {
			t.Errorf("the exit's row lacks %q:\n%s", want, row)
		}
	}
	if !strings.Contains(html.UnescapeString(string(row)), strings.TrimSpace(lastLine(wee.StderrTail))) {
		t.Errorf("the exit's row does not show the worker's stderr (%q):\n%s", lastLine(wee.StderrTail), row)
	}
}

// lastLine is the last line of s that is not blank.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestStatusPageTLS: with TLS the page is served over HTTPS, under any
// name the certificate holds, and an action's origin must be https.
func TestStatusPageTLS(t *testing.T) {
	t.Parallel()
	server, client := selfSigned(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("the-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemon.Config{HTTPAddr: "127.0.0.1:0", TLS: server, TokenFile: tokenFile})
	it := create(t, d.dial(t))
	hc := &http.Client{Timeout: bounded, Transport: &http.Transport{TLSClientConfig: client}}
	base := "https://" + d.HTTPAddr().String() + "/"
	res, err := hc.Get(base)
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET over TLS: %s", res.Status)
	}
	if res, err := statusClient.Get("http://" + d.HTTPAddr().String() + "/"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS status page: %s, want 400", res.Status)
		}
	}

	post := func(origin string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"interpreters/"+strconv.FormatInt(it.ID(), 10)+"/close", nil)
		req.Header.Set("X-Subinterp-Token", "the-token")
		req.Header.Set("Origin", origin)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post("http://" + d.HTTPAddr().String()); code != http.StatusForbidden {
		t.Errorf("close from the http origin of a TLS page: %d, want 403", code)
	}
	if code := post("https://" + d.HTTPAddr().String()); code != http.StatusOK {
		t.Errorf("close from the page's own origin: %d, want 200", code)
	}
}
