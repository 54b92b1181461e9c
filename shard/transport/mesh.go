package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Reducer is a stage's all-reduce as the worker uses it: Group over a
// Transport (NATS), Mesh over direct connections between the ranks.
// Further capabilities (Group.Forget) are found by type assertion.
type Reducer interface {
	// AllReduce replaces buf with the element-wise sum of every rank's
	// buf for the reduction (step, seq), bit-identical on every rank.
	AllReduce(ctx context.Context, step uint64, seq int, buf []float32) error
	// Dropped counts partial sums that arrived and were not used.
	Dropped() int64
	// Close leaves the group.
	Close() error
}

var (
	_ Reducer = (*Group)(nil)
	_ Reducer = (*Mesh)(nil)
)

// ErrPeer: a rank of the mesh is unreachable, closed its connection, or
// sent what the reduction did not expect.
var ErrPeer = errors.New("tensor-parallel peer")

// errAhead: a peer sent a later reduction's partial than the one this rank
// waits for, i.e. it gave up on this one.
var errAhead = errors.New("out of step")

// Wire format. Every integer is little-endian.
//
//	hello  (dialer → listener, once): magic "TSRH" | version u16 | len(cluster) u16 |
//	       plan u64 | stage u32 | from u32 | to u32 | ranks u32 | cluster
//	frame  (both ways, one per reduction): magic "TSRF" | seq u32 | step u64 | bytes u32 | 0 u32 | bytes × u8
//
// The magic on every frame catches a stream that lost its framing.
const (
	helloMagic   = 0x48525354 // "TSRH"
	frameMagic   = 0x46525354 // "TSRF"
	meshVersion  = 1
	helloSize    = 4 + 2 + 2 + 8 + 4*4
	frameHdrSize = 4 + 4 + 8 + 4 + 4
	// HelloTimeout bounds a new connection's TLS handshake and hello.
	HelloTimeout = 5 * time.Second
	// meshPending is how long an accepted connection waits for its rank
	// to join (the ranks of a stage load their shards concurrently).
	meshPending = time.Minute
)

type meshKey struct {
	plan            uint64
	stage, from, to uint32
	ranks           uint32
}

// Hub is a worker's listener for the direct tensor-parallel mesh: ranks
// of its stage with a higher index dial it, and it hands each connection
// to the Mesh that Join made for its (plan, stage, rank). One Hub serves
// every plan a worker loads in its lifetime.
type Hub struct {
	ln      net.Listener
	tls     *tls.Config
	cluster string
	maxSize int64

	mu      sync.Mutex
	closed  bool
	pending map[meshKey]net.Conn
	waiters map[meshKey]chan net.Conn
	wg      sync.WaitGroup
}

// NewHub serves the mesh of cluster on ln until Close; the Hub owns ln.
// With tc set (the gRPC mutual-TLS config: certificate, CA as roots and
// client CAs, RequireAndVerifyClientCert) both ends of every connection
// prove themselves with the cluster CA's certificates, as in gRPC.
func NewHub(ln net.Listener, cluster string, tc *tls.Config) *Hub {
	h := &Hub{ln: ln, tls: tc, cluster: cluster, maxSize: DefaultMaxTensor,
		pending: map[meshKey]net.Conn{}, waiters: map[meshKey]chan net.Conn{}}
	h.wg.Go(h.accept)
	return h
}

// Addr is the bound address.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// Close stops listening and closes connections no Mesh has taken.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	for k, c := range h.pending {
		c.Close()
		delete(h.pending, k)
	}
	h.mu.Unlock()
	err := h.ln.Close()
	h.wg.Wait()
	return err
}

func (h *Hub) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		h.wg.Go(func() { h.greet(c) })
	}
}

// greet reads a new connection's hello and parks it for its rank.
func (h *Hub) greet(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(HelloTimeout))
	if h.tls != nil {
		tc := tls.Server(c, h.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		c = tc
	}
	k, err := readHello(c, h.cluster)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		c.Close()
		return
	}
	if w, ok := h.waiters[k]; ok {
		delete(h.waiters, k)
		w <- c
		return
	}
	if old, ok := h.pending[k]; ok {
		old.Close() // a redial replaces a connection nobody took
	}
	h.pending[k] = c
	time.AfterFunc(meshPending, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.pending[k] == c {
			delete(h.pending, k)
			c.Close()
		}
	})
}

// take returns the connection parked for k, waiting for it until ctx ends.
func (h *Hub) take(ctx context.Context, k meshKey) (net.Conn, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	if c, ok := h.pending[k]; ok {
		delete(h.pending, k)
		h.mu.Unlock()
		return c, nil
	}
	w := make(chan net.Conn, 1)
	h.waiters[k] = w
	h.mu.Unlock()
	select {
	case c := <-w:
		return c, nil
	case <-ctx.Done():
		h.mu.Lock()
		if h.waiters[k] == w {
			delete(h.waiters, k)
		}
		h.mu.Unlock()
		select {
		case c := <-w: // delivered while we gave up
			c.Close()
		default:
		}
		return nil, ctx.Err()
	}
}

func writeHello(w io.Writer, cluster string, k meshKey) error {
	b := make([]byte, helloSize, helloSize+len(cluster))
	binary.LittleEndian.PutUint32(b[0:], helloMagic)
	binary.LittleEndian.PutUint16(b[4:], meshVersion)
	binary.LittleEndian.PutUint16(b[6:], uint16(len(cluster)))
	binary.LittleEndian.PutUint64(b[8:], k.plan)
	binary.LittleEndian.PutUint32(b[16:], k.stage)
	binary.LittleEndian.PutUint32(b[20:], k.from)
	binary.LittleEndian.PutUint32(b[24:], k.to)
	binary.LittleEndian.PutUint32(b[28:], k.ranks)
	_, err := w.Write(append(b, cluster...))
	return err
}

func readHello(r io.Reader, cluster string) (meshKey, error) {
	var b [helloSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return meshKey{}, err
	}
	n := int(binary.LittleEndian.Uint16(b[6:]))
	if binary.LittleEndian.Uint32(b[0:]) != helloMagic || binary.LittleEndian.Uint16(b[4:]) != meshVersion || n != len(cluster) {
		return meshKey{}, fmt.Errorf("%w: bad hello", ErrMalformed)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return meshKey{}, err
	}
	k := meshKey{plan: binary.LittleEndian.Uint64(b[8:]), stage: binary.LittleEndian.Uint32(b[16:]),
		from: binary.LittleEndian.Uint32(b[20:]), to: binary.LittleEndian.Uint32(b[24:]), ranks: binary.LittleEndian.Uint32(b[28:])}
	if string(name) != cluster || k.from >= k.ranks || k.to >= k.ranks || k.from <= k.to {
		return meshKey{}, fmt.Errorf("%w: hello for cluster %q, rank %d to %d of %d", ErrMalformed, name, k.from, k.to, k.ranks)
	}
	return k, nil
}

// Mesh is one rank's membership in its stage's direct all-reduce: one
// persistent connection to each other rank (the higher rank dials), each
// read by its own goroutine so that two ranks sending at once never block
// each other. A connection that fails is dropped and made again at the
// next AllReduce; the reduction that saw it fail returns an error wrapping
// ErrPeer at once, so a lost rank fails the step instead of stalling it.
// One Mesh runs one AllReduce at a time, and Close only after it returns.
type Mesh struct {
	hub   *Hub
	plan  uint64
	stage int
	rank  int
	addrs []string
	peers []*meshPeer
	own   []byte
	parts [][]byte

	dropped atomic.Int64
}

// Join makes rank's membership of stage in plan; addrs are the hub
// addresses of all the stage's ranks, by rank. Connections are made by
// the first AllReduce.
func (h *Hub) Join(plan uint64, stage, rank int, addrs []string) (*Mesh, error) {
	ranks := len(addrs)
	if ranks < 1 || rank < 0 || rank >= ranks || stage < 0 || stage > math.MaxInt32 || ranks > math.MaxInt32 {
		return nil, fmt.Errorf("%w: rank %d of %d in stage %d", ErrInvalid, rank, ranks, stage)
	}
	return &Mesh{hub: h, plan: plan, stage: stage, rank: rank, addrs: addrs,
		peers: make([]*meshPeer, ranks), parts: make([][]byte, ranks)}, nil
}

// AllReduce implements Reducer: each rank sends its partial to every
// other and adds all partials in rank order (rank 0's first), exactly as
// Group does. Reductions must come in increasing (step, seq) order, the
// same on every rank; a partial from an earlier reduction (one this rank
// gave up on) is dropped and counted. On error buf is unchanged.
func (m *Mesh) AllReduce(ctx context.Context, step uint64, seq int, buf []float32) error {
	if len(m.addrs) == 1 {
		return nil
	}
	if seq < 0 || seq > math.MaxInt32 {
		return fmt.Errorf("%w: seq %d", ErrInvalid, seq)
	}
	if 4*int64(len(buf)) > m.hub.maxSize {
		return fmt.Errorf("%w: %d floats", ErrTooLarge, len(buf))
	}
	if err := m.connect(ctx); err != nil {
		return err
	}
	m.own = AppendF32(m.own[:0], buf)
	for r, p := range m.peers {
		if p == nil {
			continue
		}
		if err := p.send(ctx, step, uint32(seq), m.own); err != nil {
			m.drop(r)
			return fmt.Errorf("%w %d: send: %w", ErrPeer, r, err)
		}
	}
	defer m.recycle()
	for r, p := range m.peers {
		if p == nil {
			m.parts[r] = m.own
			continue
		}
		data, err := p.recv(ctx, step, uint32(seq), &m.dropped)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			if !errors.Is(err, errAhead) {
				m.drop(r) // the connection is gone or out of step
			}
			return fmt.Errorf("%w %d: %w", ErrPeer, r, err)
		}
		m.parts[r] = data
		if len(data) != len(m.own) {
			return fmt.Errorf("%w: rank %d sent %d bytes for a %d-float reduction", ErrMalformed, r, len(data), len(buf))
		}
	}
	sumInRankOrder(buf, m.parts)
	return nil
}

// recycle hands the peers' partials back to their readers.
func (m *Mesh) recycle() {
	for r, p := range m.peers {
		if p != nil && m.parts[r] != nil {
			p.free(m.parts[r])
		}
	}
	clear(m.parts)
}

// connect makes the connections that are missing: to lower ranks by
// dialing, from higher ranks by taking them from the hub.
func (m *Mesh) connect(ctx context.Context) error {
	for r := range m.peers {
		if r == m.rank || m.peers[r] != nil {
			continue
		}
		var c net.Conn
		var err error
		if r < m.rank {
			c, err = m.dial(ctx, r)
		} else {
			c, err = m.hub.take(ctx, m.key(r, m.rank))
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w %d at %s: not connected: %w", ErrPeer, r, m.addrs[r], ctx.Err())
			}
			return fmt.Errorf("%w %d at %s: %w", ErrPeer, r, m.addrs[r], err)
		}
		m.peers[r] = newMeshPeer(c, m.hub.maxSize)
	}
	return nil
}

func (m *Mesh) key(from, to int) meshKey {
	return meshKey{plan: m.plan, stage: uint32(m.stage), from: uint32(from), to: uint32(to), ranks: uint32(len(m.addrs))}
}

// dial connects to rank r, retrying while r is not listening yet.
func (m *Mesh) dial(ctx context.Context, r int) (net.Conn, error) {
	for {
		c, err := m.dialOnce(ctx, r)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *Mesh) dialOnce(ctx context.Context, r int) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", m.addrs[r])
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(HelloTimeout))
	if m.hub.tls != nil {
		cfg := m.hub.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(m.addrs[r])
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if err := writeHello(c, m.hub.cluster, m.key(m.rank, r)); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func (m *Mesh) drop(r int) {
	if p := m.peers[r]; p != nil {
		p.close()
		m.peers[r] = nil
	}
}

// Dropped counts partials from reductions this rank had given up on.
func (m *Mesh) Dropped() int64 { return m.dropped.Load() }

// Close closes the mesh's connections and waits for their readers.
func (m *Mesh) Close() error {
	for r := range m.peers {
		m.drop(r)
	}
	return nil
}

// meshPeer is one connection of a Mesh and the goroutine that reads it.
type meshPeer struct {
	c    net.Conn
	raw  syscall.RawConn // c's TCP socket (under TLS), for spinReadable; nil if none
	in   chan meshFrame
	bufs chan []byte
	err  error // set before in is closed
	held *meshFrame
	done chan struct{}
	hdr  [frameHdrSize]byte
}

type meshFrame struct {
	step uint64
	seq  uint32
	data []byte
}

func newMeshPeer(c net.Conn, maxSize int64) *meshPeer {
	p := &meshPeer{c: c, in: make(chan meshFrame, 2), bufs: make(chan []byte, 4), done: make(chan struct{})}
	nc := c
	if t, ok := c.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	if sc, ok := nc.(syscall.Conn); ok {
		p.raw, _ = sc.SyscallConn()
	}
	go p.read(maxSize)
	return p
}

func (p *meshPeer) read(maxSize int64) {
	defer close(p.in)
	var hdr [frameHdrSize]byte
	for {
		if _, err := io.ReadFull(p.c, hdr[:]); err != nil {
			p.err = closedErr(err)
			return
		}
		n := int64(binary.LittleEndian.Uint32(hdr[16:]))
		if binary.LittleEndian.Uint32(hdr[0:]) != frameMagic || n > maxSize || n%4 != 0 {
			p.err = fmt.Errorf("%w: frame header %x", ErrMalformed, hdr)
			p.c.Close()
			return
		}
		var b []byte
		select {
		case b = <-p.bufs:
		default:
		}
		if int64(cap(b)) < n {
			b = make([]byte, n)
		}
		b = b[:n]
		if _, err := io.ReadFull(p.c, b); err != nil {
			p.err = closedErr(err)
			return
		}
		select {
		case p.in <- meshFrame{step: binary.LittleEndian.Uint64(hdr[8:]), seq: binary.LittleEndian.Uint32(hdr[4:]), data: b}:
		case <-p.done:
			p.err = ErrClosed
			return
		}
	}
}

func closedErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("connection closed: %w", err)
	}
	return err
}

func (p *meshPeer) send(ctx context.Context, step uint64, seq uint32, data []byte) error {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	_ = p.c.SetWriteDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = p.c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	binary.LittleEndian.PutUint32(p.hdr[0:], frameMagic)
	binary.LittleEndian.PutUint32(p.hdr[4:], seq)
	binary.LittleEndian.PutUint64(p.hdr[8:], step)
	binary.LittleEndian.PutUint32(p.hdr[16:], uint32(len(data)))
	bufs := net.Buffers{p.hdr[:], data}
	_, err := bufs.WriteTo(p.c)
	if errors.Is(err, net.ErrClosed) {
		// Only the reader closes the connection under us, when the peer's
		// stream broke: its reason is the one to report.
		for f := range p.in {
			p.free(f.data)
		}
		return p.err
	}
	return err
}

// recv returns the partial for (step, seq), dropping earlier ones. A
// later one means the peer gave up on this reduction: it is kept for the
// reduction it belongs to, and this one fails.
func (p *meshPeer) recv(ctx context.Context, step uint64, seq uint32, dropped *atomic.Int64) ([]byte, error) {
	for {
		var f meshFrame
		if p.held != nil {
			f, p.held = *p.held, nil
		} else {
			spinReadable(p.raw, func() bool { return len(p.in) > 0 })
			select {
			case g, ok := <-p.in:
				if !ok {
					return nil, p.err
				}
				f = g
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		switch {
		case f.step < step || f.step == step && f.seq < seq:
			dropped.Add(1)
			p.free(f.data)
		case f.step == step && f.seq == seq:
			return f.data, nil
		default:
			p.held = &f
			return nil, fmt.Errorf("%w: peer is at step %d reduction %d, this rank at step %d reduction %d", errAhead, f.step, f.seq, step, seq)
		}
	}
}

func (p *meshPeer) free(b []byte) {
	select {
	case p.bufs <- b:
	default:
	}
}

func (p *meshPeer) close() {
	close(p.done)
	p.c.Close()
	for range p.in { // wait for the reader
	}
}
