-- Runs in its own worker process: `go run ./cmd/subinterp run examples/hello.lua`
local function greet(name)
  return string.format("Hello, %s!", name)
end

print(greet("subinterp"))

-- Globals persist in the interpreter; locals end with the chunk.
counter = 0
for i = 1, 10 do
  counter = counter + i
end
io.write("sum of 1..10 = ", counter, "\n")

-- Errors are values pcall can catch, and os.exit only ends the call.
local ok, err = pcall(error, {type = "ValueError", msg = "spam"})
print("caught:", ok, err.type, err.msg)
