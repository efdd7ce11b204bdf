package worker

import (
	"context"
	"strings"
	"testing"
)

// TestYieldAcrossGo: a yield from Lua code that Go called (pcall, a
// metamethod, a comparator) is refused with an error the script can catch,
// as Lua 5.1 refuses it; the coroutine goes on. A plain yield still works.
func TestYieldAcrossGo(t *testing.T) {
	vm, _ := newVM(t, VMConfig{})
	err := vm.Exec(context.Background(), `
		local function run(f)
			local co = coroutine.create(f)
			local ok, a, b = coroutine.resume(co)
			return tostring(ok) .. " " .. tostring(a) .. " " .. tostring(b) .. " " .. coroutine.status(co)
		end
		plain = run(function() coroutine.yield("y") end)
		in_pcall = run(function()
			local ok, e = pcall(function() coroutine.yield("lost") end)
			return ok, (string.find(tostring(e), "yield across", 1, true)) ~= nil
		end)
		in_index = run(function()
			local t = setmetatable({}, {__index = function() coroutine.yield("lost") end})
			return t.x
		end)
		in_sort = run(function()
			local t = {3, 1, 2}
			table.sort(t, function(a, b) coroutine.yield("lost") return a < b end)
		end)
		wrapped = pcall(coroutine.wrap(function() pcall(coroutine.yield) return "after" end))
	`)
	if err != nil {
		t.Fatal(err)
	}
	L := vm.L()
	for name, want := range map[string]string{
		"plain":    "true y nil suspended",
		"in_pcall": "true false true dead",
	} {
		if got := L.GetGlobal(name).String(); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"in_index", "in_sort"} {
		if got := L.GetGlobal(name).String(); !strings.HasPrefix(got, "false ") || !strings.Contains(got, "yield across") || !strings.HasSuffix(got, " dead") {
			t.Errorf("%s: %q, want the resume to fail with the yield's error", name, got)
		}
	}
	if got := L.GetGlobal("wrapped").String(); got != "true" {
		t.Errorf("a yield in pcall in a wrapped coroutine: pcall of the wrap gave %s", got)
	}
}
