package transport

import (
	"syscall"
	"time"
)

// meshSpin is how long a rank waiting for a peer's partial polls the
// connection before it parks. A tensor-parallel decode step waits twice
// per layer, each time for the few tens of µs by which the ranks'
// halves differ; a parked process is woken 50–300 µs after its bytes
// arrive on a VM whose idle vCPU has halted (the kernels' pool spins for
// the same reason, see kernels/cpu workerSpin). Spinning took tp=2's c=1
// inter-token latency on issue 17's model from 14.4–16.8 ms to 9.1–9.8
// ms (docs/benchmarks.md).
const meshSpin = 500 * time.Microsecond

// spinReadable returns once raw has bytes to read (peeked, not consumed:
// the peer's reader goroutine takes them), done reports true, or meshSpin
// has passed. It keeps the waiting goroutine on its core, so that the
// reader runs as soon as the waiter blocks, without the process sleeping.
func spinReadable(raw syscall.RawConn, done func() bool) {
	if raw == nil {
		return
	}
	var b [1]byte
	ready := false
	peek := func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = n > 0 || err == nil
	}
	start := time.Now()
	for i := 0; ; i++ {
		if done() {
			return
		}
		if raw.Control(peek) != nil || ready {
			return
		}
		if i&15 == 15 && time.Since(start) > meshSpin {
			return
		}
	}
}
