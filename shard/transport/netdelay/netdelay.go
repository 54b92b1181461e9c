package netdelay

import (
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// ErrUnsupported: the relay needs Linux.
var ErrUnsupported = errors.New("netdelay: the relay runs on Linux only")

// Relay accepts connections and joins each to a new connection to its
// target, holding every chunk read from either side for the delay before
// writing it to the other.
type Relay struct {
	ln     net.Listener
	target string
	delay  time.Duration
	stop   *stopper // wakes every pump when the relay closes

	mu    sync.Mutex
	pairs map[*pair]struct{} // nil once closed
	late  []time.Duration    // a bounded sample of how late chunks were written
	n     int                // chunks written
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
	stop, err := newStopper()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		stop.close()
		return nil, err
	}
	r := &Relay{ln: ln, target: target, delay: delay, stop: stop, pairs: map[*pair]struct{}{}}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the address the relay listens on.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops accepting, ends every relayed connection and waits for the
// relay's goroutines.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.stop.fire()
	// A pump blocked writing to a peer that does not read sees no stop;
	// shutting the sockets down fails its write. Under the lock: a pair
	// leaves the map before its files close.
	r.mu.Lock()
	for p := range r.pairs {
		p.shutdown()
	}
	r.pairs = nil
	r.mu.Unlock()
	r.wg.Wait()
	r.stop.close()
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
		p, err := newPair(in, out)
		if err != nil {
			continue
		}
		r.mu.Lock()
		closed := r.pairs == nil
		if !closed {
			r.pairs[p] = struct{}{}
		}
		r.mu.Unlock()
		if closed {
			p.close()
			return
		}
		r.wg.Go(func() { r.pump(p, p.a, p.b) })
		r.wg.Go(func() { r.pump(p, p.b, p.a) })
	}
}

// done is called by each of a pair's two pumps as it ends; the second
// closes the pair.
func (r *Relay) done(p *pair) {
	if p.left.Add(-1) == 0 {
		r.mu.Lock()
		if r.pairs != nil {
			delete(r.pairs, p)
		}
		r.mu.Unlock()
		p.close()
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
