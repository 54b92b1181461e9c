package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/weights"
)

// Progress is a snapshot of a model load.
type Progress struct {
	Tensors, TotalTensors int
	Bytes, TotalBytes     int64
}

// ErrWeights reports a checkpoint tensor that is missing or malformed.
var ErrWeights = errors.New("bad checkpoint tensor")

// Loader uploads checkpoint tensors to a backend, checking their shapes.
// It keeps the first error, so an architecture's constructor can read all
// its tensors and check Err once.
type Loader struct {
	b        kernels.Backend
	ckpt     *weights.Checkpoint
	progress func(Progress)
	p        Progress
	err      error
	// quant is the format Matrix and SplitMatrix convert to (0: none).
	quant kernels.DType

	// rules are the card's tensors (nil for an architecture that loads
	// only whole); a shard's loader reads only the rank's slices of them.
	spec  *spec.Spec
	rules []spec.Rule
	rank  *plan.Rank
}

// NewLoader reads tensors of ckpt onto backend b (Load makes one for each
// model; tests of single blocks make their own).
func NewLoader(b kernels.Backend, ckpt *weights.Checkpoint) *Loader {
	return newLoader(b, ckpt, nil)
}

func newLoader(b kernels.Backend, ckpt *weights.Checkpoint, progress func(Progress)) *Loader {
	l := &Loader{b: b, ckpt: ckpt, progress: progress}
	for _, n := range ckpt.Names() {
		info, _ := ckpt.Info(n)
		l.p.TotalTensors++
		l.p.TotalBytes += info.Size
	}
	return l
}

// Err is the first error met, if any.
func (l *Loader) Err() error { return l.err }

// Has reports whether the checkpoint holds a tensor.
func (l *Loader) Has(name string) bool {
	_, ok := l.ckpt.Info(name)
	return ok
}

func (l *Loader) fail(err error) {
	if l.err == nil {
		l.err = err
	}
}

func dtypeOf(d weights.DType) (kernels.DType, bool) {
	switch d {
	case "F32":
		return kernels.F32, true
	case "F16":
		return kernels.F16, true
	case "BF16":
		return kernels.BF16, true
	}
	return 0, false
}

func (l *Loader) info(name string, shape []int) (weights.TensorInfo, kernels.DType, bool) {
	if l.err != nil {
		return weights.TensorInfo{}, 0, false
	}
	info, ok := l.ckpt.Info(name)
	if !ok {
		l.fail(fmt.Errorf("%w: %s is missing", ErrWeights, name))
		return info, 0, false
	}
	dt, ok := dtypeOf(info.DType)
	if !ok {
		l.fail(fmt.Errorf("%w: %s has dtype %s; weights must be F32, F16 or BF16", ErrWeights, name, info.DType))
		return info, 0, false
	}
	if !slices.Equal(info.Shape, shape) {
		l.fail(fmt.Errorf("%w: %s has shape %v, the config implies %v", ErrWeights, name, info.Shape, shape))
		return info, 0, false
	}
	return info, dt, true
}

// Tensor uploads a tensor whose full shape must equal shape. With a shard
// it uploads only the rank's slice of it, and nil when the rank needs none
// of it (a row-parallel bias, which only rank 0 adds).
func (l *Loader) Tensor(name string, shape ...int) kernels.Tensor {
	return l.Split(name, shape, nil)[0]
}

// Optional is Tensor for a tensor that may be absent (nil then).
func (l *Loader) Optional(name string, shape ...int) kernels.Tensor {
	if !l.Has(name) {
		return nil
	}
	return l.Tensor(name, shape...)
}

// Split uploads parts of one tensor of the given full shape: part i is
// the concatenation of the row ranges parts[i] (nil: every row), and only
// those bytes are read. Fused QKV weights are split by head this way.
// Row numbers are local to what this rank loads: with a shard, row 0 is
// the first row of the rank's slice.
func (l *Loader) Split(name string, shape []int, parts ...[][2]int) []kernels.Tensor {
	return l.split(name, shape, false, false, parts)
}

// Matrix is Tensor for a 2-D weight that feeds a matmul (a linear layer,
// an LM head): with WithQuantize it is converted to the quantized format.
func (l *Loader) Matrix(name string, shape ...int) kernels.Tensor {
	return l.SplitMatrix(name, shape, nil)[0]
}

// SplitMatrix is Split for matmul weights, converted like Matrix.
func (l *Loader) SplitMatrix(name string, shape []int, parts ...[][2]int) []kernels.Tensor {
	return l.split(name, shape, false, true, parts)
}

// TensorWithZeroRow is Tensor with one zero row appended to the rank's
// slice of a 2-D tensor (a vocabulary-parallel embedding's padding row);
// matrix says whether it also feeds a matmul (a tied LM head).
func (l *Loader) TensorWithZeroRow(name string, matrix bool, shape ...int) kernels.Tensor {
	return l.split(name, shape, true, matrix, [][][2]int{nil})[0]
}

func (l *Loader) split(name string, shape []int, zeroRow, matrix bool, parts [][][2]int) []kernels.Tensor {
	out := make([]kernels.Tensor, len(parts))
	info, dt, ok := l.info(name, shape)
	if !ok {
		return out
	}
	slice, ok := l.slice(name, shape)
	if !ok {
		return out
	}
	local := slice.LocalShape()
	for i, ranges := range parts {
		if ranges == nil {
			ranges = [][2]int{{0, local[0]}}
		}
		var raw []byte
		rows := 0
		for _, r := range ranges {
			for _, g := range globalRows(slice.Rows, r) {
				b, err := l.ckpt.Rows(name, g[0], g[1])
				if err != nil {
					l.fail(err)
					return out
				}
				raw = appendCols(raw, b, info, slice.Cols)
			}
			rows += r[1] - r[0]
		}
		pad := 0
		if zeroRow && len(local) == 2 {
			pad = local[1] * dt.Size()
			raw = append(raw, make([]byte, pad)...)
			rows++
		}
		out[i] = l.upload(dt, raw, append([]int{rows}, local[1:]...))
		l.p.Bytes -= int64(pad) // progress counts checkpoint bytes
		if matrix && l.quant != 0 && out[i] != nil {
			out[i] = l.quantize(name, out[i])
		}
	}
	l.tensorDone()
	return out
}

// slice is the part of a tensor this loader reads: everything unsharded,
// the planner's slice for the rank otherwise. ok is false when the rank
// loads none of it.
func (l *Loader) slice(name string, shape []int) (plan.Slice, bool) {
	full := plan.Slice{Shape: shape, Rows: [][2]int{{0, shape[0]}}, Cols: [2]int{0, 1}}
	if len(shape) == 2 {
		full.Cols[1] = shape[1]
	}
	if l.rules == nil {
		return full, true
	}
	rule, _, ok := spec.Lookup(l.rules, name)
	if !ok {
		l.fail(fmt.Errorf("%w: the model reads %s, which the %s card does not name", ErrWeights, name, l.spec.Arch))
		return full, false
	}
	if want := plan.Shape(rule, l.spec); !slices.Equal(want, shape) {
		l.fail(fmt.Errorf("%w: %s: the card's shape %v differs from the model's %v", ErrWeights, name, want, shape))
		return full, false
	}
	if l.rank == nil {
		return full, true
	}
	s := l.rank.Slice(rule, l.spec)
	return s, len(s.Rows) > 0
}

// globalRows maps local rows [r0,r1) of a slice made of the concatenated
// global row ranges onto those global ranges.
func globalRows(ranges [][2]int, r [2]int) [][2]int {
	var out [][2]int
	off := 0
	for _, g := range ranges {
		n := g[1] - g[0]
		lo, hi := max(r[0], off), min(r[1], off+n)
		if lo < hi {
			out = append(out, [2]int{g[0] + lo - off, g[0] + hi - off})
		}
		off += n
	}
	return out
}

// appendCols appends columns cols of every row of raw (rows of a 2-D
// tensor, or elements of a 1-D one) to dst; to a nil dst with every column
// kept, it is raw itself.
func appendCols(dst, raw []byte, info weights.TensorInfo, cols [2]int) []byte {
	if len(info.Shape) != 2 || (cols[0] == 0 && cols[1] == info.Shape[1]) {
		if dst == nil {
			// The checkpoint's own bytes (mapped read-only): Upload copies them
			// once, where staging them would leave garbage the size of the
			// shard behind a load. The capacity cap makes a later append (a
			// padding row) copy instead of writing into the mapping.
			return raw[:len(raw):len(raw)]
		}
		return append(dst, raw...)
	}
	size := info.DType.Size()
	stride := info.Shape[1] * size
	for row := 0; row+stride <= len(raw); row += stride {
		dst = append(dst, raw[row+cols[0]*size:row+cols[1]*size]...)
	}
	return dst
}

func (l *Loader) upload(dt kernels.DType, raw []byte, shape []int) kernels.Tensor {
	t, err := l.b.Upload(dt, raw, shape...)
	if err != nil {
		l.fail(err)
		return nil
	}
	l.p.Bytes += int64(len(raw))
	return t
}

// quantize converts t to l.quant. Load sets l.quant only for a backend
// that implements kernels.Quantizer.
func (l *Loader) quantize(name string, t kernels.Tensor) kernels.Tensor {
	qt, err := l.b.(kernels.Quantizer).Quantize(t, l.quant)
	if err != nil {
		l.fail(fmt.Errorf("%s: %w", name, err))
		return nil
	}
	return qt
}

// LoadedBytes is how many weight bytes have been uploaded so far.
func (l *Loader) LoadedBytes() int64 { return l.p.Bytes }

// shardTotals sets the progress totals to what stage needs of the
// checkpoint, so a shard's progress ends at 100%.
func (l *Loader) shardTotals(p *plan.Plan, stage int) {
	l.p.TotalTensors, l.p.TotalBytes = 0, 0
	for _, n := range l.ckpt.Names() {
		rule, layer, ok := spec.Lookup(l.rules, n)
		if !ok || !p.Needs(stage, rule, layer) {
			continue
		}
		info, _ := l.ckpt.Info(n)
		l.p.TotalTensors++
		l.p.TotalBytes += l.rank.Slice(rule, l.spec).Elements() * int64(info.DType.Size())
	}
}

func (l *Loader) tensorDone() {
	l.p.Tensors++
	if l.progress != nil {
		l.progress(l.p)
	}
}
