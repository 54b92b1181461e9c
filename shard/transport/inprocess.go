package transport

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// DefaultInProcessMaxPayload is InProcess's MaxPayload unless changed with
// InProcessMaxPayload.
const DefaultInProcessMaxPayload = 64 << 20

// InProcess is a Transport inside one process: Publish copies the frame
// once and calls the matching handlers on the publisher's goroutine. It is
// the fast path for ranks that share a process, and the fake for tests.
type InProcess struct {
	max  int
	subs subSet[*inprocSub]
}

// InProcessOption adjusts NewInProcess.
type InProcessOption func(*InProcess)

// InProcessMaxPayload sets the MaxPayload of an InProcess transport, e.g.
// to exercise chunking in tests.
func InProcessMaxPayload(n int) InProcessOption { return func(t *InProcess) { t.max = n } }

// NewInProcess returns an empty in-process transport.
func NewInProcess(opts ...InProcessOption) *InProcess {
	t := &InProcess{max: DefaultInProcessMaxPayload}
	for _, o := range opts {
		o(t)
	}
	return t
}

// MaxPayload implements Transport.
func (t *InProcess) MaxPayload() int { return t.max }

// Publish implements Transport.
func (t *InProcess) Publish(ctx context.Context, subject string, f *tesserav1.Frame) error {
	if err := checkPublish(ctx, subject); err != nil {
		return err
	}
	if n := proto.Size(f); n > t.max {
		return fmt.Errorf("%w: %d > %d bytes", ErrTooLarge, n, t.max)
	}
	var c *tesserav1.Frame
	var match []*inprocSub
	if !t.subs.each(func(s *inprocSub) {
		if matchSubject(s.subject, subject) {
			match = append(match, s)
		}
	}) {
		return ErrClosed
	}
	for _, s := range match {
		if s.closed.Load() {
			continue
		}
		if c == nil {
			c = cloneFrame(f)
		}
		s.h(c)
	}
	return nil
}

// Subscribe implements Transport.
func (t *InProcess) Subscribe(ctx context.Context, subject string, h Handler) (Subscription, error) {
	if err := checkSubscribe(subject); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &inprocSub{t: t, subject: subject, h: h}
	if err := t.subs.add(s); err != nil {
		return nil, err
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Close implements Transport.
func (t *InProcess) Close() error {
	t.subs.closeAll()
	return nil
}

type inprocSub struct {
	t       *InProcess
	subject string
	h       Handler
	stop    func() bool
	closed  atomic.Bool
}

func (s *inprocSub) Dropped() int64 { return 0 }

func (s *inprocSub) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.stop != nil {
		s.stop()
	}
	s.t.subs.remove(s)
	return nil
}

func checkSubscribe(subject string) error {
	if subject == "" || strings.ContainsAny(subject, " \t\r\n") {
		return fmt.Errorf("%w: subscribe subject %q", ErrInvalid, subject)
	}
	return nil
}

// matchSubject reports whether subject matches pattern under NATS rules:
// tokens separated by '.', "*" matches one token, a final ">" one or more.
func matchSubject(pattern, subject string) bool {
	for {
		var p, s string
		pi := strings.IndexByte(pattern, '.')
		if pi < 0 {
			p, pattern = pattern, ""
		} else {
			p, pattern = pattern[:pi], pattern[pi+1:]
		}
		if p == ">" && pi < 0 {
			return subject != ""
		}
		si := strings.IndexByte(subject, '.')
		if si < 0 {
			s, subject = subject, ""
		} else {
			s, subject = subject[:si], subject[si+1:]
		}
		if p != "*" && p != s {
			return false
		}
		if pi < 0 || si < 0 {
			return pi < 0 && si < 0
		}
	}
}

// subSet is a transport's set of live subscriptions, so that Close can end
// them all.
type subSet[S interface {
	comparable
	Close() error
}] struct {
	mu     sync.RWMutex
	subs   map[S]struct{}
	closed bool
}

// add registers s, or fails with ErrClosed once closeAll ran.
func (ss *subSet[S]) add(s S) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return ErrClosed
	}
	if ss.subs == nil {
		ss.subs = make(map[S]struct{})
	}
	ss.subs[s] = struct{}{}
	return nil
}

func (ss *subSet[S]) remove(s S) {
	ss.mu.Lock()
	delete(ss.subs, s)
	ss.mu.Unlock()
}

// each calls f for every subscription under a read lock; false when closed.
func (ss *subSet[S]) each(f func(S)) bool {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	for s := range ss.subs {
		f(s)
	}
	return !ss.closed
}

// closeAll marks the set closed and closes every subscription.
func (ss *subSet[S]) closeAll() {
	ss.mu.Lock()
	subs := ss.subs
	ss.subs, ss.closed = nil, true
	ss.mu.Unlock()
	for s := range subs {
		s.Close()
	}
}
