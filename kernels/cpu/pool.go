package cpu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tessera-llm/tessera/kernels"
)

// job is one parallel op: a static kernel function plus its operands. Jobs
// come from a free list and carry their own WaitGroup and chunk counter, so
// dispatching one allocates nothing.
type job struct {
	fn    func(j *job, s *scratch, lo, hi int)
	n     int // items in [0, n)
	chunk int // items claimed at a time
	next  atomic.Int64
	wg    sync.WaitGroup
	// left counts helpers still working; the caller polls it before it
	// blocks on wg (see awaitHelpers).
	left atomic.Int32

	// Operands, a union over the ops; each kernel documents what it reads.
	t    [5]*Tensor
	f    [2]float32
	i    [4]int
	act  kernels.Activation
	attn *kernels.Attention
	ids  []int32
	fs   []float32
	u32  []uint32
	rope *ropeTable
	xq   *q8Act
	hs   []uint16
	segs [maxFused]gemvSeg
	nseg int
}

// scratch is per-participant working memory. A worker goroutine owns one
// for its lifetime; a calling goroutine borrows one from the pool's free
// list. Buffers grow on first use and are reused afterwards.
type scratch struct {
	a, b, c []float32
	heads   []int
	xq      q8Act
	h       []uint16
	xp8     []uint32 // int8 x panels (matMulQ8)
	corr    []int32  // a weight group's block corrections (gemmQ8Kernel)
}

// pool runs jobs on a fixed set of worker goroutines started once. The
// calling goroutine takes part, so threads workers means threads-1 helpers.
type pool struct {
	threads int
	work    chan *job

	jobs freeList[job]
	scr  freeList[scratch]
}

func newPool(threads int) *pool {
	p := &pool{threads: threads, work: make(chan *job, threads)}
	for range threads - 1 {
		go worker(p.work)
	}
	return p
}

// worker must not reference the pool or the Backend, so that an unused
// Backend can be collected and its cleanup can close the channel.
func worker(work <-chan *job) {
	s := new(scratch)
	for {
		j, ok := receive(work)
		if !ok {
			return
		}
		j.loop(s)
		// left first: once the caller sees it reach zero it only waits for
		// this Done, and this goroutine does not touch j after it.
		j.left.Add(-1)
		j.wg.Done()
	}
}

// workerSpin is how long an idle worker polls for the next job before it
// parks. A parked goroutine takes 50–300µs to be woken on an idle core
// (the sender's P holds it in runnext until another P's M wakes and
// steals it), longer than a whole decode GEMV, so without spinning the
// second core joined few decode ops. Decode issues its ops microseconds
// apart, so a spinning worker stays hot for a whole forward pass and
// parks once the model is idle.
const workerSpin = 300 * time.Microsecond

// receive returns the next job, polling the channel for workerSpin before
// blocking on it; ok is false once the channel is closed.
func receive(work <-chan *job) (j *job, ok bool) {
	if poll(func() bool {
		select {
		case j, ok = <-work:
			return true
		default:
			return false
		}
	}) {
		return j, ok
	}
	j, ok = <-work
	return j, ok
}

// poll calls ready until it reports true or workerSpin has passed, and
// says which. It is how pool goroutines wait for one another without
// parking (see workerSpin).
func poll(ready func() bool) bool {
	var start time.Time
	for i := 0; ; i++ {
		if ready() {
			return true
		}
		if i&255 == 0 {
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) > workerSpin {
				return false
			}
		}
	}
}

func (p *pool) close() { close(p.work) }

// freeList is a mutex-guarded stack of reusable objects. Unlike a
// sync.Pool it is never emptied by the garbage collector, so a warm decode
// loop stays allocation-free.
type freeList[T any] struct {
	mu    sync.Mutex
	items []*T
}

func (f *freeList[T]) get() *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k := len(f.items); k > 0 {
		x := f.items[k-1]
		f.items = f.items[:k-1]
		return x
	}
	return new(T)
}

func (f *freeList[T]) put(x *T) {
	f.mu.Lock()
	f.items = append(f.items, x)
	f.mu.Unlock()
}

// get returns a cleared job running fn.
func (p *pool) get(fn func(*job, *scratch, int, int)) *job {
	j := p.jobs.get()
	j.fn = fn
	return j
}

func (p *pool) put(j *job) {
	j.fn = nil
	j.t = [5]*Tensor{}
	j.attn, j.ids, j.fs, j.u32, j.rope, j.xq, j.hs = nil, nil, nil, nil, nil, nil, nil
	j.segs = [maxFused]gemvSeg{}
	p.jobs.put(j)
}

// run executes j.fn over the items [0, n) and returns j to the free list.
// work is a rough cost of the whole op in element operations: below
// about serialWork the op runs on the calling goroutine alone. Items are
// handed out in chunks of at least grain.
func (p *pool) run(j *job, n, grain int, work int) {
	if n <= 0 {
		p.put(j)
		return
	}
	grain = max(grain, 1)
	parts := min(p.threads, (n+grain-1)/grain, max(work/serialWork, 1))
	s := p.scr.get()
	if parts <= 1 {
		j.fn(j, s, 0, n)
	} else {
		// A few chunks per participant balance uneven progress.
		chunks := parts
		if n/grain >= 4*parts {
			chunks = 4 * parts
		}
		j.n = n
		j.chunk = max(grain, (n+chunks-1)/chunks)
		j.next.Store(0)
		j.left.Store(int32(parts - 1))
		j.wg.Add(parts - 1)
		for range parts - 1 {
			p.work <- j
		}
		j.loop(s)
		awaitHelpers(j)
	}
	p.scr.put(s)
	p.put(j)
}

// awaitHelpers returns once every helper has finished j. It polls for up
// to workerSpin before blocking: a caller that parks on the WaitGroup is
// woken 50–300µs after the last helper finishes in this VM (see
// workerSpin), while a decode GEMV's last chunk ends microseconds apart on
// the two cores.
func awaitHelpers(j *job) {
	poll(func() bool { return j.left.Load() == 0 })
	j.wg.Wait()
}

// serialWork is the op size (in element operations) below which splitting
// across goroutines costs more than it saves.
const serialWork = 1 << 15

func (j *job) loop(s *scratch) {
	c := int64(j.chunk)
	for {
		lo := int(j.next.Add(c) - c)
		if lo >= j.n {
			return
		}
		j.fn(j, s, lo, min(lo+j.chunk, j.n))
	}
}
