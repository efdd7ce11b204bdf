package interpreters

import (
	"strconv"

	"github.com/subinterp/subinterp/protocol"
)

// Tuple is a fixed sequence of values: the results of a call that returned
// several, or a shareable composite for PrepareMain.
type Tuple = protocol.Tuple

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
