package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
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

// Tensor uploads a whole tensor whose shape must equal shape.
func (l *Loader) Tensor(name string, shape ...int) kernels.Tensor {
	_, dt, ok := l.info(name, shape)
	if !ok {
		return nil
	}
	raw, err := l.ckpt.Bytes(name)
	if err != nil {
		l.fail(err)
		return nil
	}
	t := l.upload(dt, raw, shape)
	l.tensorDone()
	return t
}

// Optional is Tensor for a tensor that may be absent (nil then).
func (l *Loader) Optional(name string, shape ...int) kernels.Tensor {
	if !l.Has(name) {
		return nil
	}
	return l.Tensor(name, shape...)
}

// Split uploads parts of one tensor of the given full shape: part i is
// the concatenation of the row ranges parts[i], and only those bytes are
// read. Fused QKV weights are split by head this way, and a rank takes its
// slice of a tensor with a single part.
func (l *Loader) Split(name string, shape []int, parts ...[][2]int) []kernels.Tensor {
	_, dt, ok := l.info(name, shape)
	if !ok {
		return make([]kernels.Tensor, len(parts))
	}
	out := make([]kernels.Tensor, len(parts))
	for i, ranges := range parts {
		rows := 0
		var chunks [][]byte
		for _, r := range ranges {
			b, err := l.ckpt.Rows(name, r[0], r[1])
			if err != nil {
				l.fail(err)
				return out
			}
			chunks = append(chunks, b)
			rows += r[1] - r[0]
		}
		out[i] = l.upload(dt, slices.Concat(chunks...), append([]int{rows}, shape[1:]...))
	}
	l.tensorDone()
	return out
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

func (l *Loader) tensorDone() {
	l.p.Tensors++
	if l.progress != nil {
		l.progress(l.p)
	}
}
