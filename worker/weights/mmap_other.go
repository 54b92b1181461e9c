//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package weights

import (
	"errors"
	"os"
)

func mmapFile(*os.File, int64) ([]byte, error) {
	return nil, errors.New("weights: memory mapping not supported on this platform")
}

func munmap([]byte) error { return nil }
