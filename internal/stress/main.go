// Command stress runs the whole test suite under the race detector several
// times while a CPU hog keeps every core busy, the way a loaded machine
// runs it, and reports each test that failed with how often. `make stress`
// runs it; it exits non-zero when any run failed.
//
//	go run ./internal/stress [-n runs] [-timeout d] [packages]
//
// The hog is goroutines of this process, so it stops when the command
// does, however it ends.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
)

// event is the part of a `go test -json` event this command reads.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	runs := flag.Int("n", 5, "how many times to run the suite")
	timeout := flag.String("timeout", "20m", "go test -timeout for each run")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "stress: -n must be at least 1")
		os.Exit(2)
	}

	var stop atomic.Bool
	for range runtime.NumCPU() {
		go hog(&stop)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)

	failures := map[string]int{} // "package TestName" → runs it failed in
	failedRuns := 0
	for i := 1; i <= *runs; i++ {
		fmt.Printf("stress: run %d of %d (%d cores hogged)\n", i, *runs, runtime.NumCPU())
		failed, err := runSuite(*timeout, pkgs, sigs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stress:", err)
			os.Exit(2)
		}
		if len(failed) > 0 {
			failedRuns++
		}
		for _, name := range failed {
			failures[name]++
			fmt.Printf("stress: run %d: FAIL %s\n", i, name)
		}
	}
	stop.Store(true)

	if failedRuns == 0 {
		fmt.Printf("stress: %d of %d runs passed\n", *runs, *runs)
		return
	}
	names := make([]string, 0, len(failures))
	for n := range failures {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool {
		if failures[names[a]] != failures[names[b]] {
			return failures[names[a]] > failures[names[b]]
		}
		return names[a] < names[b]
	})
	fmt.Printf("stress: %d of %d runs failed; failing tests:\n", failedRuns, *runs)
	for _, n := range names {
		fmt.Printf("  %d/%d  %s\n", failures[n], *runs, n)
	}
	os.Exit(1)
}

// hog spins until stop is set.
func hog(stop *atomic.Bool) {
	x := uint64(1)
	for !stop.Load() {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	_ = x
}

// runSuite runs go test once and returns the tests (or packages, when the
// failure is not a test's) that failed. The failing tests' output is
// copied to stdout as it comes; the rest is dropped.
func runSuite(timeout string, pkgs []string, sigs <-chan os.Signal) ([]string, error) {
	args := append([]string{"test", "-race", "-count=1", "-json", "-timeout", timeout}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-done:
		}
	}()
	failed, printed, output := collect(out)
	waitErr := cmd.Wait()
	for _, name := range printed {
		fmt.Print(output[name])
	}
	if waitErr != nil && len(failed) == 0 {
		// go test failed with no test or package reported failing: a
		// build error, or the command itself.
		return nil, fmt.Errorf("go test: %v", waitErr)
	}
	return failed, nil
}

// collect reads go test -json events and returns the failed top-level
// tests and packages, by "package Test" (or the package alone), and those
// and the failed subtests, whose output it keeps.
func collect(r io.Reader) (failed, printed []string, output map[string]string) {
	output = map[string]string{}
	failedTest := map[string]bool{} // packages one of whose tests failed
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		name := strings.TrimSpace(ev.Package + " " + ev.Test)
		switch ev.Action {
		case "output":
			output[name] += ev.Output
		case "pass", "skip":
			delete(output, name)
		case "fail":
			switch {
			case ev.Test != "":
				failedTest[ev.Package] = true
				printed = append(printed, name)
				if !strings.Contains(ev.Test, "/") {
					failed = append(failed, name)
				}
			case !failedTest[ev.Package]:
				// A package failed outside its tests: a panic, a timeout,
				// a race reported after the tests.
				failed = append(failed, name)
				printed = append(printed, name)
			}
		}
	}
	return failed, printed, output
}
