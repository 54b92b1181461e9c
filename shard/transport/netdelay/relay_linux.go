package netdelay

import (
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// stopper is an eventfd that every pump polls: once written it stays
// readable, waking them all.
type stopper struct{ fd int }

func newStopper() (*stopper, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &stopper{fd}, nil
}

func (s *stopper) fire() { _, _ = unix.Write(s.fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }

func (s *stopper) close() { unix.Close(s.fd) }

// pair is a relayed connection and the one to the target, as blocking
// file descriptors: the pumps use them directly from threads of their
// own, not through Go's poller.
type pair struct {
	files []*os.File
	conns []net.Conn
	a, b  int
	left  atomic.Int32
}

func newPair(in, out net.Conn) (*pair, error) {
	p := &pair{conns: []net.Conn{in, out}}
	for _, c := range p.conns {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			p.close()
			return nil, err
		}
		p.files = append(p.files, f)
	}
	p.a, p.b = int(p.files[0].Fd()), int(p.files[1].Fd()) // Fd makes them blocking
	p.left.Store(2)
	return p, nil
}

func (p *pair) shutdown() {
	unix.Shutdown(p.a, unix.SHUT_RDWR)
	unix.Shutdown(p.b, unix.SHUT_RDWR)
}

func (p *pair) close() {
	for _, f := range p.files {
		f.Close()
	}
	for _, c := range p.conns {
		c.Close()
	}
}

// pump relays src to dst: each chunk leaves its delay after it was read,
// and reading goes on while earlier chunks wait, so the delay adds latency
// and no bandwidth limit. One thread waits in ppoll for the next chunk or
// the next due time, whichever is first, and the kernel wakes it directly.
// The thread runs SCHED_FIFO (when allowed) with the minimum timer slack:
// the relay stands in for a network, which does not queue behind the
// processes it connects, and on a small host those may be spinning.
func (r *Relay) pump(p *pair, src, dst int) {
	defer r.done(p)
	runtime.LockOSThread() // not unlocked: the thread, with its priority, ends with the goroutine
	_ = unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0)
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	type chunk struct {
		b   []byte
		due time.Time
	}
	var q []chunk
	fds := []unix.PollFd{{Fd: int32(r.stop.fd), Events: unix.POLLIN}, {Fd: int32(src), Events: unix.POLLIN}}
	for len(fds) > 1 || len(q) > 0 {
		var timeout *unix.Timespec
		if len(q) > 0 {
			ts := unix.NsecToTimespec(max(time.Until(q[0].due), 0).Nanoseconds())
			timeout = &ts
		}
		if _, err := unix.Ppoll(fds, timeout, nil); err != nil && err != unix.EINTR {
			break
		}
		if fds[0].Revents != 0 {
			break // the relay closed
		}
		if len(fds) > 1 && fds[1].Revents != 0 {
			b := make([]byte, 64<<10)
			n, err := unix.Read(src, b)
			switch {
			case n > 0:
				q = append(q, chunk{b[:n], time.Now().Add(r.delay)})
			case err != unix.EINTR && err != unix.EAGAIN:
				fds = fds[:1] // end of stream: deliver what is held, then pass the end on
			}
		}
		for len(q) > 0 && !time.Now().Before(q[0].due) {
			r.sample(time.Since(q[0].due))
			if !writeAll(dst, q[0].b) {
				unix.Shutdown(src, unix.SHUT_RDWR)
				return
			}
			q = q[1:]
		}
	}
	if len(fds) == 1 && len(q) == 0 {
		unix.Shutdown(dst, unix.SHUT_WR)
		return
	}
	unix.Shutdown(src, unix.SHUT_RDWR)
	unix.Shutdown(dst, unix.SHUT_RDWR)
}

func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}
