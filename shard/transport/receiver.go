package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Key identifies one tensor in flight: the frames that share a key are the
// chunks of one tensor.
type Key struct {
	Plan  uint64
	Step  uint64
	Stage int32
	Rank  int32
	Kind  tesserav1.FrameKind
	Seq   int32
}

// KeyOf is the key of f.
func KeyOf(f *tesserav1.Frame) Key {
	return Key{Plan: f.GetPlanVersion(), Step: f.GetStepId(), Stage: f.GetStage(), Rank: f.GetRank(), Kind: f.GetKind(), Seq: f.GetSeq()}
}

// Tensor is a reassembled tensor. Data is owned by the receiver of the
// Tensor.
type Tensor struct {
	Key
	DType tesserav1.DType
	Shape []int64
	Data  []byte
}

// SendTensor publishes data as one tensor described by meta (plan, step,
// stage, rank, kind, seq, dtype, shape; its chunk fields and data are
// ignored), split into as many chunks as the transport's MaxPayload needs.
// len(data) must match dtype and shape.
func SendTensor(ctx context.Context, t Transport, subject string, meta *tesserav1.Frame, data []byte) error {
	f := &tesserav1.Frame{
		PlanVersion: meta.GetPlanVersion(), StepId: meta.GetStepId(), Stage: meta.GetStage(), Rank: meta.GetRank(),
		Kind: meta.GetKind(), Seq: meta.GetSeq(), Dtype: meta.GetDtype(), Shape: meta.GetShape(),
		Chunk: math.MaxInt32, Chunks: math.MaxInt32,
	}
	// Header size with the widest chunk numbers, plus the data field's
	// tag and a 5-byte length.
	room := t.MaxPayload() - proto.Size(f) - 6
	if room < 1 {
		return fmt.Errorf("%w: max payload %d leaves no room for data", ErrTooLarge, t.MaxPayload())
	}
	chunks := max(1, (len(data)+room-1)/room)
	if chunks > math.MaxInt32 {
		return fmt.Errorf("%w: %d bytes in chunks of %d", ErrTooLarge, len(data), room)
	}
	f.Chunks = int32(chunks)
	f.Chunk = 0
	f.Data = data[:min(room, len(data))]
	if err := ValidateFrame(f); err != nil {
		return fmt.Errorf("transport: send %s: %w", subject, err)
	}
	if total, _ := TensorBytes(f.Dtype, f.Shape); total != int64(len(data)) {
		return fmt.Errorf("%w: %d data bytes for shape %v (%d bytes)", ErrInvalid, len(data), f.Shape, total)
	}
	for i := 0; i < chunks; i++ {
		f.Chunk = int32(i)
		f.Data = data[i*room : min((i+1)*room, len(data))]
		if err := t.Publish(ctx, subject, f); err != nil {
			return err
		}
	}
	return nil
}

// SendProto publishes m (a Step or StepResult) encoded, as a U8 tensor
// with the routing fields of meta; the receiver decodes Tensor.Data with
// proto.Unmarshal.
func SendProto(ctx context.Context, t Transport, subject string, meta *tesserav1.Frame, m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("transport: encode %T: %w", m, err)
	}
	h := &tesserav1.Frame{
		PlanVersion: meta.GetPlanVersion(), StepId: meta.GetStepId(), Stage: meta.GetStage(), Rank: meta.GetRank(),
		Kind: meta.GetKind(), Seq: meta.GetSeq(), Dtype: tesserav1.DType_DTYPE_U8, Shape: []int64{int64(len(b))},
	}
	return SendTensor(ctx, t, subject, h, b)
}

// AppendF32 appends x to dst as little-endian float32s.
func AppendF32(dst []byte, x []float32) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// F32 decodes little-endian float32s from b into dst, which must hold
// len(b)/4 values.
func F32(dst []float32, b []byte) error {
	if len(b) != 4*len(dst) {
		return fmt.Errorf("%w: %d bytes for %d float32s", ErrInvalid, len(b), len(dst))
	}
	decodeF32(dst, b)
	return nil
}

// Receiver defaults.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultMaxTensor  = 1 << 30
	DefaultMaxPending = 1 << 30
)

// ReceiverOption adjusts NewReceiver.
type ReceiverOption func(*Receiver)

// Timeout sets how long an incomplete tensor, or a complete one that
// nobody takes, is kept before it is dropped as stale (default 30 s).
func Timeout(d time.Duration) ReceiverOption { return func(r *Receiver) { r.timeout = d } }

// MaxTensor bounds one tensor's size in bytes; larger ones are malformed.
func MaxTensor(n int64) ReceiverOption { return func(r *Receiver) { r.maxTensor = n } }

// MaxPending bounds the bytes held for incomplete and untaken tensors;
// frames beyond it are dropped.
func MaxPending(n int64) ReceiverOption { return func(r *Receiver) { r.maxPending = n } }

// Filter makes the receiver ignore (without counting) frames for which
// keep returns false, e.g. its own echoes.
func Filter(keep func(*tesserav1.Frame) bool) ReceiverOption {
	return func(r *Receiver) { r.filter = keep }
}

// Receiver reassembles the tensors arriving on one subscription. Frames
// that break the rules (see ValidateFrame; also a chunk twice, chunks that
// disagree on dtype, shape or count, or sizes that do not add up) are
// dropped and counted, as are tensors not completed or not taken within
// the timeout; a bad frame never affects other tensors.
type Receiver struct {
	sub        Subscription
	timeout    time.Duration
	maxTensor  int64
	maxPending int64
	filter     func(*tesserav1.Frame) bool

	mu        sync.Mutex
	closed    bool
	partial   map[Key]*assembly
	ready     map[Key]*readyTensor
	order     []Key // completion order, for Next; may hold taken keys
	waiters   map[Key]chan struct{}
	anyReady  chan struct{} // closed and replaced when a tensor completes
	pending   int64
	floor     Key // (Plan, Step) below it are stale
	lastSweep time.Time

	malformed atomic.Int64
	stale     atomic.Int64
	overflow  atomic.Int64
}

type assembly struct {
	first  time.Time
	dtype  tesserav1.DType
	shape  []int64
	total  int64
	chunks map[int32][]byte
	want   int32
	bytes  int64
}

type readyTensor struct {
	t      *Tensor
	at     time.Time
	frames int64
}

// NewReceiver subscribes to subject on t and reassembles what arrives.
// Close it (or end ctx) to unsubscribe.
func NewReceiver(ctx context.Context, t Transport, subject string, opts ...ReceiverOption) (*Receiver, error) {
	r := &Receiver{
		timeout: DefaultTimeout, maxTensor: DefaultMaxTensor, maxPending: DefaultMaxPending,
		partial: map[Key]*assembly{}, ready: map[Key]*readyTensor{}, waiters: map[Key]chan struct{}{},
		anyReady: make(chan struct{}), lastSweep: time.Now(),
	}
	for _, o := range opts {
		o(r)
	}
	sub, err := t.Subscribe(ctx, subject, r.deliver)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	return r, nil
}

// Stats counts the frames a receiver dropped, by reason.
type Stats struct {
	Malformed   int64 // broke the frame rules
	Stale       int64 // incomplete or untaken past the timeout, or below Forget's floor
	Overflow    int64 // beyond MaxPending
	Undecodable int64 // not a Frame at all, or dropped by the subscription
}

// Stats returns the drop counters.
func (r *Receiver) Stats() Stats {
	return Stats{Malformed: r.malformed.Load(), Stale: r.stale.Load(), Overflow: r.overflow.Load(), Undecodable: r.sub.Dropped()}
}

// Dropped is the total number of frames dropped for any reason.
func (r *Receiver) Dropped() int64 {
	s := r.Stats()
	return s.Malformed + s.Stale + s.Overflow + s.Undecodable
}

// Forget drops, as stale, everything held for plan versions below plan and
// steps below step of plan, and every such frame that arrives later. Call
// it when a step is abandoned and replayed.
func (r *Receiver) Forget(plan, step uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if plan < r.floor.Plan || plan == r.floor.Plan && step <= r.floor.Step {
		return
	}
	r.floor = Key{Plan: plan, Step: step}
	r.sweepLocked(time.Now(), true)
}

func (r *Receiver) below(k Key) bool {
	return k.Plan < r.floor.Plan || k.Plan == r.floor.Plan && k.Step < r.floor.Step
}

// deliver is the subscription's handler.
func (r *Receiver) deliver(f *tesserav1.Frame) {
	if r.filter != nil && !r.filter(f) {
		return
	}
	if err := ValidateFrame(f); err != nil {
		r.malformed.Add(1)
		return
	}
	total, _ := TensorBytes(f.Dtype, f.Shape)
	if total > r.maxTensor {
		r.malformed.Add(1)
		return
	}
	k := KeyOf(f)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.maybeSweepLocked(now)
	if r.below(k) {
		r.stale.Add(1)
		return
	}
	n := int64(len(f.Data))
	if r.pending+n > r.maxPending {
		r.overflow.Add(1)
		return
	}
	if f.Chunks == 1 {
		if _, dup := r.ready[k]; dup {
			r.malformed.Add(1)
			return
		}
		if a := r.partial[k]; a != nil {
			r.dropAssemblyLocked(k, a, 1)
			return
		}
		r.completeLocked(k, &Tensor{Key: k, DType: f.Dtype, Shape: f.Shape, Data: f.Data}, now, 1)
		return
	}
	a := r.partial[k]
	if a == nil {
		if _, dup := r.ready[k]; dup {
			r.malformed.Add(1)
			return
		}
		a = &assembly{first: now, dtype: f.Dtype, shape: f.Shape, total: total, want: f.Chunks, chunks: make(map[int32][]byte)}
		r.partial[k] = a
	} else if a.dtype != f.Dtype || a.want != f.Chunks || !slices.Equal(a.shape, f.Shape) {
		r.dropAssemblyLocked(k, a, 1)
		return
	}
	if _, dup := a.chunks[f.Chunk]; dup || a.bytes+n > a.total {
		r.dropAssemblyLocked(k, a, 1)
		return
	}
	a.chunks[f.Chunk] = f.Data
	a.bytes += n
	r.pending += n
	if int32(len(a.chunks)) < a.want {
		return
	}
	delete(r.partial, k)
	r.pending -= a.bytes
	if a.bytes != a.total {
		r.malformed.Add(int64(a.want))
		return
	}
	data := make([]byte, 0, a.total)
	for i := int32(0); i < a.want; i++ {
		data = append(data, a.chunks[i]...)
	}
	r.completeLocked(k, &Tensor{Key: k, DType: a.dtype, Shape: a.shape, Data: data}, now, int64(a.want))
}

// dropAssemblyLocked drops a's chunks and the offending frame as malformed.
func (r *Receiver) dropAssemblyLocked(k Key, a *assembly, extra int64) {
	delete(r.partial, k)
	r.pending -= a.bytes
	r.malformed.Add(int64(len(a.chunks)) + extra)
}

func (r *Receiver) completeLocked(k Key, t *Tensor, now time.Time, frames int64) {
	r.ready[k] = &readyTensor{t: t, at: now, frames: frames}
	r.pending += int64(len(t.Data))
	r.order = append(r.order, k)
	if ch := r.waiters[k]; ch != nil {
		close(ch)
		delete(r.waiters, k)
	}
	close(r.anyReady)
	r.anyReady = make(chan struct{})
}

func (r *Receiver) maybeSweepLocked(now time.Time) {
	if now.Sub(r.lastSweep) >= r.timeout/4 {
		r.sweepLocked(now, false)
	}
}

// sweepLocked drops what is older than the timeout or below the floor.
func (r *Receiver) sweepLocked(now time.Time, floorOnly bool) {
	r.lastSweep = now
	for k, a := range r.partial {
		if r.below(k) || !floorOnly && now.Sub(a.first) > r.timeout {
			delete(r.partial, k)
			r.pending -= a.bytes
			r.stale.Add(int64(len(a.chunks)))
		}
	}
	for k, rt := range r.ready {
		if r.below(k) || !floorOnly && now.Sub(rt.at) > r.timeout {
			delete(r.ready, k)
			r.pending -= int64(len(rt.t.Data))
			r.stale.Add(rt.frames)
		}
	}
	// Drop taken keys from the head of the completion order.
	i := 0
	for i < len(r.order) && r.ready[r.order[i]] == nil {
		i++
	}
	r.order = append(r.order[:0], r.order[i:]...)
}

func (r *Receiver) takeLocked(k Key) *Tensor {
	rt := r.ready[k]
	if rt == nil {
		return nil
	}
	delete(r.ready, k)
	r.pending -= int64(len(rt.t.Data))
	return rt.t
}

// Wait returns the tensor with key k, waiting for it until ctx ends (then
// it returns ctx.Err(), e.g. context.DeadlineExceeded). Tensors that
// complete meanwhile under other keys are kept for their own Wait or Next.
func (r *Receiver) Wait(ctx context.Context, k Key) (*Tensor, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if t := r.takeLocked(k); t != nil {
			r.mu.Unlock()
			return t, nil
		}
		r.maybeSweepLocked(time.Now())
		ch := r.waiters[k]
		if ch == nil {
			ch = make(chan struct{})
			r.waiters[k] = ch
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			r.mu.Lock()
			if r.waiters[k] == ch {
				delete(r.waiters, k)
			}
			r.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// Next returns the oldest completed tensor that nobody has taken, waiting
// until one completes or ctx ends.
func (r *Receiver) Next(ctx context.Context) (*Tensor, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		for len(r.order) > 0 {
			k := r.order[0]
			r.order = r.order[1:]
			if t := r.takeLocked(k); t != nil {
				r.mu.Unlock()
				return t, nil
			}
		}
		r.maybeSweepLocked(time.Now())
		ch := r.anyReady
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close unsubscribes and releases what the receiver holds; pending Wait
// and Next calls return ErrClosed.
func (r *Receiver) Close() error {
	err := r.sub.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.partial, r.ready, r.order, r.pending = nil, nil, nil, 0
	for k, ch := range r.waiters {
		close(ch)
		delete(r.waiters, k)
	}
	close(r.anyReady)
	return err
}
