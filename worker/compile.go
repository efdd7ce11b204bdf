package worker

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	"github.com/subinterp/subinterp/protocol"
)

const (
	// maxSourceSize bounds what is parsed at all: compiling runs in Go and
	// cannot be interrupted.
	maxSourceSize = 16 << 20
	// maxSyntaxLevels is C Lua's limit on nested constructs. gopher-lua's
	// compiler recurses once per level and dies of a fatal Go stack
	// overflow around a million, long before which compile time explodes.
	maxSyntaxLevels = 200
	// maxChainLength bounds chains that C Lua parses in a loop but whose
	// AST, and so gopher-lua's compiler, is as deep as they are long:
	// a+b+c…, a.b.c…, f()()…, elseif… Real code stays far below it.
	maxChainLength = 5000
	// maxListFields is the most positional fields a table constructor may
	// have: gopher-lua encodes the batch number of the 512th batch of 50
	// wrongly and stores the rest at nonsense keys.
	maxListFields = 511 * 50
	// protoCacheSize bounds the compiled-chunk cache.
	protoCacheSize = 256
	// maxCachedSource keeps huge one-off sources out of the cache.
	maxCachedSource = 1 << 20
)

// syntaxError is how every compile failure reaches the caller.
func syntaxError(msg string) *protocol.Error {
	return &protocol.Error{
		Code:       protocol.CodeExecutionFailed,
		Type:       "SyntaxError",
		Msg:        msg,
		Formatted:  "SyntaxError: " + msg,
		Errdisplay: "SyntaxError: " + msg,
	}
}

// protoCache is a small LRU of compiled chunks: a FunctionProto is
// read-only, so one may back any number of closures.
type protoCache struct {
	ll    *list.List
	items map[[sha256.Size]byte]*list.Element
}

type protoEntry struct {
	key   [sha256.Size]byte
	proto *lua.FunctionProto
}

func newProtoCache() *protoCache {
	return &protoCache{ll: list.New(), items: make(map[[sha256.Size]byte]*list.Element)}
}

func protoKey(kind, name, src string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(src))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (c *protoCache) get(k [sha256.Size]byte) *lua.FunctionProto {
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*protoEntry).proto
	}
	return nil
}

func (c *protoCache) put(k [sha256.Size]byte, p *lua.FunctionProto) {
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		e.Value.(*protoEntry).proto = p
		return
	}
	c.items[k] = c.ll.PushFront(&protoEntry{key: k, proto: p})
	for c.ll.Len() > protoCacheSize {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*protoEntry).key)
	}
}

// compileLua parses, checks and compiles src as a chunk called name.
func compileLua(src, name string) (*lua.FunctionProto, *protocol.Error) {
	if len(src) > maxSourceSize {
		return nil, syntaxError(fmt.Sprintf("%s: source too large (%d bytes, the limit is %d)", name, len(src), maxSourceSize))
	}
	chunk, err := parse.Parse(strings.NewReader(src), name)
	if err != nil {
		return nil, parseError(err, name, src)
	}
	if perr := checkNesting(chunk, name); perr != nil {
		return nil, perr
	}
	return compileChecked(chunk, name)
}

func compileChecked(chunk []ast.Stmt, name string) (p *lua.FunctionProto, perr *protocol.Error) {
	defer func() {
		if r := recover(); r != nil {
			p, perr = nil, syntaxError(fmt.Sprintf("%s: cannot compile: %v", name, r))
		}
	}()
	p, err := lua.Compile(chunk, name)
	if err != nil {
		if ce, ok := err.(*lua.CompileError); ok {
			return nil, syntaxError(fmt.Sprintf("%s:%d: %s", name, ce.Line, ce.Message))
		}
		return nil, syntaxError(fmt.Sprintf("%s: %v", name, err))
	}
	return p, nil
}

func parseError(err error, name, src string) *protocol.Error {
	pe, ok := err.(*parse.Error)
	if !ok {
		return syntaxError(fmt.Sprintf("%s: %v", name, err))
	}
	msg := strings.TrimSpace(pe.Message)
	if pe.Pos.Line == parse.EOF {
		return syntaxError(fmt.Sprintf("%s: %s near <eof>", name, msg))
	}
	e := syntaxError(fmt.Sprintf("%s:%d:%d: %s near '%s'", name, pe.Pos.Line, pe.Pos.Column, msg, pe.Token))
	e.Errdisplay = sourcePointer(src, pe.Pos.Line, pe.Pos.Column) + e.Formatted
	return e
}

// sourcePointer shows line of src with a caret under col, as CPython does
// for a SyntaxError; "" when the line is missing or too long to help.
func sourcePointer(src string, line, col int) string {
	for i := 1; i < line; i++ {
		nl := strings.IndexByte(src, '\n')
		if nl < 0 {
			return ""
		}
		src = src[nl+1:]
	}
	if nl := strings.IndexByte(src, '\n'); nl >= 0 {
		src = src[:nl]
	}
	src = strings.TrimRight(src, "\r")
	if line < 1 || len(src) > 200 {
		return ""
	}
	col = min(max(col, 1), len(src)+1)
	return "  " + src + "\n  " + strings.Repeat(" ", col-1) + "^\n"
}

// checkNesting rejects ASTs that gopher-lua's compiler cannot take or
// miscompiles. Its own recursion stops at the limits, so it is safe on any
// parse tree.
func checkNesting(chunk []ast.Stmt, name string) *protocol.Error {
	c := nestChecker{}
	c.stmts(chunk, 0, 0)
	if c.problem == "" {
		return nil
	}
	return syntaxError(fmt.Sprintf("%s:%d: %s", name, c.line, c.problem))
}

type nestChecker struct {
	problem string // set once, which stops the walk
	line    int
}

func (c *nestChecker) fail(n ast.PositionHolder, problem string) {
	c.problem, c.line = problem, n.Line()
}

// enter accounts for one more node at (level, chain); it reports whether
// the walk may go on.
func (c *nestChecker) enter(n ast.PositionHolder, level, chain int) bool {
	if c.problem != "" {
		return false
	}
	if level > maxSyntaxLevels || chain > maxChainLength {
		c.fail(n, "chunk has too many syntax levels")
		return false
	}
	return true
}

func (c *nestChecker) stmts(ss []ast.Stmt, level, chain int) {
	for _, s := range ss {
		if c.problem != "" {
			return
		}
		c.stmt(s, level, chain)
	}
}

func (c *nestChecker) exprs(es []ast.Expr, level, chain int) {
	for _, e := range es {
		if c.problem != "" {
			return
		}
		c.expr(e, level, chain)
	}
}

func (c *nestChecker) stmt(s ast.Stmt, level, chain int) {
	if !c.enter(s, level, chain) {
		return
	}
	// A statement's parts are one level below it; a block one more.
	l, ch := level+1, chain+1
	switch s := s.(type) {
	case *ast.AssignStmt:
		c.exprs(s.Lhs, l, ch)
		c.exprs(s.Rhs, l, ch)
	case *ast.LocalAssignStmt:
		c.exprs(s.Exprs, l, ch)
	case *ast.FuncCallStmt:
		c.expr(s.Expr, l, ch)
	case *ast.DoBlockStmt:
		c.stmts(s.Stmts, l, ch)
	case *ast.WhileStmt:
		c.expr(s.Condition, l, ch)
		c.stmts(s.Stmts, l, ch)
	case *ast.RepeatStmt:
		c.expr(s.Condition, l, ch)
		c.stmts(s.Stmts, l, ch)
	case *ast.IfStmt:
		c.expr(s.Condition, l, ch)
		c.stmts(s.Then, l, ch)
		if len(s.Else) == 1 {
			if elif, ok := s.Else[0].(*ast.IfStmt); ok {
				// elseif is a loop in C Lua but a nested IfStmt here.
				c.stmt(elif, level, ch)
				return
			}
		}
		c.stmts(s.Else, l, ch)
	case *ast.NumberForStmt:
		c.expr(s.Init, l, ch)
		c.expr(s.Limit, l, ch)
		if s.Step != nil {
			c.expr(s.Step, l, ch)
		}
		c.stmts(s.Stmts, l, ch)
	case *ast.GenericForStmt:
		c.exprs(s.Exprs, l, ch)
		c.stmts(s.Stmts, l, ch)
	case *ast.FuncDefStmt:
		if s.Name != nil {
			if s.Name.Func != nil {
				c.expr(s.Name.Func, l, ch)
			}
			if s.Name.Receiver != nil {
				c.expr(s.Name.Receiver, l, ch)
			}
		}
		if s.Func != nil {
			c.expr(s.Func, l, ch)
		}
	case *ast.ReturnStmt:
		c.exprs(s.Exprs, l, ch)
	}
}

func isBinary(e ast.Expr) bool {
	switch e.(type) {
	case *ast.LogicalOpExpr, *ast.RelationalOpExpr, *ast.StringConcatOpExpr, *ast.ArithmeticOpExpr:
		return true
	}
	return false
}

func isPostfix(e ast.Expr) bool {
	switch e.(type) {
	case *ast.AttrGetExpr, *ast.FuncCallExpr:
		return true
	}
	return false
}

func (c *nestChecker) expr(e ast.Expr, level, chain int) {
	if e == nil || !c.enter(e, level, chain) {
		return
	}
	l, ch := level+1, chain+1
	// operand continues a chain of the same shape without a new level.
	operand := func(x ast.Expr, same func(ast.Expr) bool) {
		if x != nil && same(x) {
			c.expr(x, level, ch)
		} else {
			c.expr(x, l, ch)
		}
	}
	switch e := e.(type) {
	case *ast.AttrGetExpr:
		operand(e.Object, isPostfix)
		c.expr(e.Key, l, ch)
	case *ast.TableExpr:
		items := 0
		for _, f := range e.Fields {
			if f.Key == nil {
				items++
			}
		}
		if items > maxListFields {
			c.fail(e, fmt.Sprintf("table constructor has more than %d list items", maxListFields))
			return
		}
		for _, f := range e.Fields {
			if c.problem != "" {
				return
			}
			if f.Key != nil {
				c.expr(f.Key, l, ch)
			}
			c.expr(f.Value, l, ch)
		}
	case *ast.FuncCallExpr:
		if e.Func != nil {
			operand(e.Func, isPostfix)
		}
		if e.Receiver != nil {
			operand(e.Receiver, isPostfix)
		}
		c.exprs(e.Args, l, ch)
	case *ast.LogicalOpExpr:
		operand(e.Lhs, isBinary)
		operand(e.Rhs, isBinary)
	case *ast.RelationalOpExpr:
		operand(e.Lhs, isBinary)
		operand(e.Rhs, isBinary)
	case *ast.StringConcatOpExpr:
		operand(e.Lhs, isBinary)
		operand(e.Rhs, isBinary)
	case *ast.ArithmeticOpExpr:
		operand(e.Lhs, isBinary)
		operand(e.Rhs, isBinary)
	case *ast.UnaryMinusOpExpr:
		c.expr(e.Expr, l, ch)
	case *ast.UnaryNotOpExpr:
		c.expr(e.Expr, l, ch)
	case *ast.UnaryLenOpExpr:
		c.expr(e.Expr, l, ch)
	case *ast.FunctionExpr:
		c.stmts(e.Stmts, l, ch)
	}
}
