package netdelay

import (
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Relay accepts connections and joins each to a new connection to its
// target, holding every chunk read from either side for the delay before
// writing it to the other.
type Relay struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	late  []time.Duration // a bounded sample of how late chunks were written
	n     int             // chunks written
	wg    sync.WaitGroup
}

// maxSamples bounds the lateness sample; later chunks replace earlier ones
// round-robin.
const maxSamples = 1 << 16

// Start listens on listen (host:port; port 0 picks one) and relays to
// target with delay each way.
func Start(listen, target string, delay time.Duration) (*Relay, error) {
	if delay < 0 {
		return nil, errors.New("netdelay: negative delay")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops accepting, closes every relayed connection and waits for
// the relay's goroutines.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// Samples is a copy of how much later than due the relay wrote chunks:
// every chunk's, or a bounded sample of them.
func (r *Relay) Samples() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.late)
}

// Quantiles are the quantiles q (each in [0, 1]) of samples, in the order
// asked; zero for no samples.
func Quantiles(samples []time.Duration, q ...float64) []time.Duration {
	s := slices.Sorted(slices.Values(samples))
	out := make([]time.Duration, len(q))
	for i, f := range q {
		if len(s) > 0 {
			out[i] = s[min(int(f*float64(len(s))), len(s)-1)]
		}
	}
	return out
}

func (r *Relay) accept() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		if !r.track(in, out) {
			return
		}
		r.wg.Go(func() { r.pump(in, out) })
		r.wg.Go(func() { r.pump(out, in) })
	}
}

// track registers a pair of connections, or closes them when the relay
// is closing.
func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

type chunk struct {
	b   []byte
	due time.Time
}

// pump copies src to dst, each chunk leaving its delay after it was
// read. Reading goes on while earlier chunks wait, so the delay adds
// latency, not a bandwidth limit. When either side ends, both close.
func (r *Relay) pump(src, dst net.Conn) {
	q := make(chan chunk, 1024)
	r.wg.Go(func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(r.delay)}
			}
			if err != nil {
				return
			}
		}
	})
	// Go's timers wake no finer than a millisecond on an idle Linux
	// process; a thread of its own, with the kernel's timer slack at its
	// minimum, sleeps to within tens of microseconds.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	defer func() {
		src.Close()
		dst.Close()
		for range q { // let the reader finish
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			ts := unix.NsecToTimespec(d.Nanoseconds())
			for unix.Nanosleep(&ts, &ts) == unix.EINTR {
			}
		}
		r.sample(time.Since(c.due))
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

func (r *Relay) sample(late time.Duration) {
	r.mu.Lock()
	if len(r.late) < maxSamples {
		r.late = append(r.late, late)
	} else {
		r.late[r.n%maxSamples] = late
	}
	r.n++
	r.mu.Unlock()
}
