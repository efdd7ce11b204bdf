// Command bare is the start-up floor of a worker: a program that links
// gopher-lua and msgpack and nothing of subinterp, makes a Lua state with
// its standard library, and writes one msgpack value to stdout to say it
// is ready. baseline.StartBare times it from exec to that value.
package main

import (
	"os"

	"github.com/vmihailenco/msgpack/v5"
	lua "github.com/yuin/gopher-lua"
)

func main() {
	L := lua.NewState()
	defer L.Close()
	b, err := msgpack.Marshal("ready")
	if err != nil {
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(b); err != nil {
		os.Exit(1)
	}
}
