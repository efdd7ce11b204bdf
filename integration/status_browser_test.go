package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subinterp/subinterp/daemon"
	"github.com/subinterp/subinterp/interpreters"
)

// chromiumPath is where Debian's chromium package puts the browser;
// .ci/run installs it.
const chromiumPath = "/usr/bin/chromium"

// browserBound bounds the browser test's every wait: a page that never
// shows what is expected fails the test rather than hang it.
const browserBound = 60 * time.Second

// TestStatusPageInBrowser loads the status page of a real daemon in
// headless Chromium: an interpreter created through the socket appears
// without a reload, Restart brings up a new worker and lists the old one's
// exit, and Close ends an interpreter, which leaves the page. Screenshots,
// wide and phone-sized, are kept in screenshotDir.
func TestStatusPageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("this test needs Chromium at %s (Debian: apt-get install chromium; .ci/run installs it): %v", chromiumPath, err)
	}
	token := "status-page-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemon.Config{HTTPAddr: "127.0.0.1:0", TokenFile: tokenFile})
	rt := d.dial(t)
	page := "http://" + d.HTTPAddr().String() + "/"

	browser := startBrowser(t)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, browserBound)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, browserBound)
		defer cancel()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	shoot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, browserBound)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if len(png) == 0 {
			t.Fatalf("screenshot %s is empty", name)
		}
		if err := os.WriteFile(filepath.Join(screenshotDir(t), name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	css := func(format string, args ...any) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(format, args...)) }

	do("load the page",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(page+"#token="+token),
		chromedp.WaitVisible(css("#live.on")),
		chromedp.WaitVisible(css("#interpreters .empty")),
	)

	it := create(t, rt)
	row := fmt.Sprintf("#interp-%d", it.ID())
	pid, err := it.Pid()
	if err != nil {
		t.Fatal(err)
	}
	do("see the new interpreter", chromedp.WaitVisible(css("%s", row)))
	if shown := get("its pid", chromedp.Text(css(`%s td[data-label="PID"]`, row))); shown != strconv.Itoa(pid) {
		t.Errorf("the page shows pid %q for interpreter %d, whose worker is %d", shown, it.ID(), pid)
	}

	restartable := create(t, rt, interpreters.WithRestart(interpreters.RestartPolicy{MaxRestarts: 3, Backoff: time.Millisecond}))
	oldPid, err := restartable.Pid()
	if err != nil {
		t.Fatal(err)
	}
	restart := css(`#interp-%d button[data-action="restart"]`, restartable.ID())
	do("restart an interpreter",
		chromedp.WaitVisible(restart),
		chromedp.Click(restart),
		chromedp.WaitVisible(css(`#exits tr[data-interp="%d"][data-pid="%d"] .then-restarted`, restartable.ID(), oldPid)),
	)
	if got, want := get("the notice", chromedp.Text(css("#notice"))), fmt.Sprintf("restarting interpreter %d", restartable.ID()); got != want {
		t.Errorf("after Restart the page says %q, want %q", got, want)
	}
	do("see it idle in its new worker", chromedp.WaitVisible(css(`#interp-%d .state-idle`, restartable.ID())))
	if newPid, err := restartable.Pid(); err != nil || newPid == oldPid {
		t.Errorf("after Restart interpreter %d has worker %d (%v); it had %d", restartable.ID(), newPid, err, oldPid)
	}
	q, err := rt.CreateQueue(8)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PutNowait("an item"); err != nil {
		t.Fatal(err)
	}
	do("see the queue", chromedp.WaitVisible(css(`#queue-%d`, q.ID())))
	if got := get("its size", chromedp.Text(css(`#queue-%d td[data-label="Size"]`, q.ID()))); got != "1" {
		t.Errorf("the page shows size %q for a queue holding one item", got)
	}

	shoot("status-page.png")
	do("narrow the page to a phone's", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	shoot("status-page-phone.png")
	do("widen the page again", chromedp.EmulateViewport(1280, 800))
	t.Logf("screenshots in %s", screenshotDir(t))

	do("close the interpreter",
		chromedp.Click(css(`%s button[data-action="close"]`, row)),
		chromedp.WaitNotPresent(css("%s", row)),
	)
	if got, want := get("the notice", chromedp.Text(css("#notice"))), fmt.Sprintf("closed interpreter %d", it.ID()); got != want {
		t.Errorf("after Close the page says %q, want %q", got, want)
	}
	if _, err := it.Pid(); !errors.Is(err, interpreters.ErrInterpreterNotFound) {
		t.Errorf("interpreter %d after Close on the page: %v, want ErrInterpreterNotFound", it.ID(), err)
	}
}

// screenshotDir is where the browser test leaves its screenshots: a
// directory of the system's temporary one that outlives the test, so they
// can be looked at after make test. Each run replaces the last one's.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "subinterp-status-page")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startBrowser starts headless Chromium with a profile of its own and
// returns a context to drive a tab with. When the test ends the browser is
// closed, and every process that used its profile must be gone: none
// outlives the test.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	profile, err := os.MkdirTemp("", "subinterp-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	var output bytes.Buffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		// Chromium puts its singleton socket's directory in TMPDIR: inside
		// the profile, it goes with it.
		chromedp.Env("TMPDIR="+profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.CombinedOutput(&output),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills the browser and waits for it
		if left := waitProfileUnused(profile, 10*time.Second); len(left) > 0 {
			t.Errorf("Chromium processes outlived their browser: %v", left)
		}
		_ = os.RemoveAll(profile)
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", output.String())
		}
	})
	// The first action starts the browser, which lives as long as the
	// context of that action: it gets no bound of its own. Start's own
	// wait for the browser is bounded by chromedp.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v\n%s", err, output.String())
	}
	return ctx
}

// waitProfileUnused waits until no process has profile as its user data
// directory, and kills and returns those that still do after timeout.
func waitProfileUnused(profile string, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		left := profileUsers(profile)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// profileUsers lists the processes whose command line names profile as
// their user data directory: Chromium passes it to each of its processes.
func profileUsers(profile string) []int {
	want := []byte("--user-data-dir=" + profile + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, want) {
			pids = append(pids, pid)
		}
	}
	return pids
}
