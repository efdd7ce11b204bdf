// Command subinterp runs Lua scripts in isolated interpreters, each in its
// own worker process: `subinterp run FILE.lua` with no daemon, or a
// supervisor daemon (`subinterp serve`) driven by the other commands.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:]))
}
