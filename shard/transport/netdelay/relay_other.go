//go:build !linux

package netdelay

import (
	"net"
	"sync/atomic"
)

type stopper struct{ fd int }

func newStopper() (*stopper, error) { return nil, ErrUnsupported }
func (*stopper) fire()              {}
func (*stopper) close()             {}

type pair struct {
	a, b int
	left atomic.Int32
}

func newPair(in, out net.Conn) (*pair, error) { return nil, ErrUnsupported }
func (*pair) close()                          {}
func (*pair) shutdown()                       {}
func (*Relay) pump(*pair, int, int)           {}
