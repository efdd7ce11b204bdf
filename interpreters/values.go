package interpreters

import "github.com/subinterp/subinterp/protocol"

// Tuple is a fixed sequence of values: the results of a call that returned
// several, or a shareable composite for PrepareMain.
type Tuple = protocol.Tuple
