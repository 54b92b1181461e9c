package cuda

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ptxFS holds whatever `make cuda-ptx` produced: ptx/tessera.sm_90.ptx and
// ptx/tessera.compute_80.ptx. The directory also keeps a README so that the
// embed pattern matches on a tree where no PTX has been generated yet; Open
// then fails with errNoPTX instead of the build failing.
//
//go:embed ptx
var ptxFS embed.FS

var errNoPTX = errors.New("cuda: no PTX embedded in this binary: run `make cuda-ptx` (nvcc, CUDA ≥ 12) " +
	"to generate kernels/cuda/ptx/*.ptx from kernels/cuda/kernels/*.cu, then rebuild with -tags cuda")

// ptxFor picks the PTX for a device of compute capability major.minor:
// the sm_90 build on Hopper and newer, the portable compute_80 build
// (JIT-compiled by the driver) elsewhere or when the sm_90 one is missing.
func ptxFor(major, minor int) (name, image string, err error) {
	entries, err := fs.ReadDir(ptxFS, "ptx")
	if err != nil {
		return "", "", errNoPTX
	}
	have := map[string]bool{}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ptx") {
			have[e.Name()] = true
		}
	}
	var order []string
	if major*10+minor >= 90 {
		order = append(order, "tessera.sm_90.ptx")
	}
	order = append(order, "tessera.compute_80.ptx")
	for _, n := range order {
		if have[n] {
			raw, err := ptxFS.ReadFile("ptx/" + n)
			if err != nil {
				return "", "", err
			}
			return n, string(raw), nil
		}
	}
	if len(have) == 0 {
		return "", "", errNoPTX
	}
	return "", "", fmt.Errorf("cuda: no embedded PTX fits compute capability %d.%d (have %v); "+
		"tessera.compute_80.ptx runs on any device of 8.0 and newer", major, minor, have)
}
