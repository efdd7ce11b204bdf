package main

import (
	"strings"
	"testing"
)

// TestDemo runs the built-in tenants: the host's functions and module
// work, the tenants are walled off from each other, and the misbehaving
// ones are stopped with their errors.
func TestDemo(t *testing.T) {
	var out strings.Builder
	if err := run(&out, demo); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"visits\t3\tkeys\tprofile,visits\n",
		`json	{"langs":["lua","go"],"name":"ada"}`,
		"reach another tenant:\tInterpreterNotFoundError\n",
		"interpreters I see:\t2\n",
		"== spin.lua\n-- stopped: CPU time limit",
		"bad key:\tHostError\tthe key must be a non-empty string",
		"-- failed: NotShareableError",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, out.String())
		}
	}
}
