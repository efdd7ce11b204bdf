//go:build !race

package pseidle

import (
	"os"

	"github.com/subinterp/subinterp/protocol"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == protocol.WorkerArg {
		Stop()
	}
}
