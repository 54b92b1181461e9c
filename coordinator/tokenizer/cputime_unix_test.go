//go:build unix

package tokenizer

import (
	"syscall"
	"time"
)

// processCPU is the user+system CPU time of the process. Benchmarks report
// MB per CPU-second next to wall-clock MB/s so that a loaded machine (other
// builds sharing the cores) does not distort the figure; with GOMAXPROCS=1
// it is single-core throughput, GC included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
