package kernels

import "fmt"

// The argument checks every backend makes before it touches storage. A
// failed check is a programming error: backends panic with the error,
// prefixed by their name and the op ("cpu.MatMul: ...").

// rowsOf is the product of all but the last dimension.
func rowsOf(shape []int) int {
	n := 1
	for _, d := range shape[:max(len(shape)-1, 0)] {
		n *= d
	}
	return n
}

func lastOf(shape []int) int {
	if len(shape) == 0 {
		return 1
	}
	return shape[len(shape)-1]
}

// MatMulShape checks MatMul's tensors and returns dst's rows n, the
// weight's rows m (dst's last dim) and its columns k (x's last dim).
func MatMulShape(dst, x, w, bias Tensor) (n, m, k int, err error) {
	ws := w.Shape()
	if len(ws) != 2 {
		return 0, 0, 0, fmt.Errorf("weight %v%v is not 2-D", w.DType(), ws)
	}
	m, k = ws[0], ws[1]
	xs := x.Shape()
	if len(xs) == 0 || lastOf(xs) != k {
		return 0, 0, 0, fmt.Errorf("x %v%v does not end in k=%d of weight %v%v", x.DType(), xs, k, w.DType(), ws)
	}
	n = rowsOf(xs)
	if ds := dst.Shape(); len(ds) == 0 || lastOf(ds) != m || dst.Len() != n*m {
		return 0, 0, 0, fmt.Errorf("dst %v%v, want [%d %d] for x %v · w %v", dst.DType(), ds, n, m, xs, ws)
	}
	if bias != nil && bias.Len() != m {
		return 0, 0, 0, fmt.Errorf("bias %v%v, want %d elements", bias.DType(), bias.Shape(), m)
	}
	return n, m, k, nil
}

// Check checks r against x [n, Heads*HeadDim] and the n positions, and
// returns the largest position (0 for none).
func (r RoPE) Check(x Tensor, pos []int32) (maxPos int, err error) {
	if r.Heads <= 0 || r.HeadDim <= 0 || r.Dim <= 0 || r.Dim%2 != 0 || r.Offset < 0 || r.Offset+r.Dim > r.HeadDim {
		return 0, fmt.Errorf("bad RoPE %+v", r)
	}
	if stride := r.Heads * r.HeadDim; x.Len() != len(pos)*stride {
		return 0, fmt.Errorf("x %v%v, want [%d %d]", x.DType(), x.Shape(), len(pos), stride)
	}
	for _, p := range pos {
		if p < 0 {
			return 0, fmt.Errorf("negative position %d", p)
		}
		maxPos = max(maxPos, int(p))
	}
	return maxPos, nil
}

// cacheShape checks a KV pool [blocks, blockSize, ...] and returns its
// blocks and the width of one token's row.
func cacheShape(c Tensor, blockSize int) (blocks, width int, err error) {
	s := c.Shape()
	if len(s) < 2 || s[1] != blockSize || blockSize <= 0 {
		return 0, 0, fmt.Errorf("cache %v%v, want [blocks %d kvHeads headDim]", c.DType(), s, blockSize)
	}
	if s[0] == 0 {
		return 0, 0, nil
	}
	return s[0], c.Len() / (s[0] * blockSize), nil
}

// CheckTable checks that table names at least need blocks, each inside a
// pool of blocks.
func CheckTable(table []int32, blocks, need int) error {
	if need > len(table) {
		return fmt.Errorf("block table has %d blocks, need %d", len(table), need)
	}
	for _, blk := range table[:need] {
		if blk < 0 || int(blk) >= blocks {
			return fmt.Errorf("block %d outside a pool of %d blocks", blk, blocks)
		}
	}
	return nil
}

// WriteKVShape checks WriteKV's arguments and returns the tokens n and
// the row width; table is checked for the blocks those tokens need.
func WriteKVShape(kCache, vCache, k, v Tensor, blockSize int, table []int32, start int) (n, width int, err error) {
	blocks, width, err := cacheShape(kCache, blockSize)
	if err != nil {
		return 0, 0, err
	}
	vb, vw, err := cacheShape(vCache, blockSize)
	if err != nil {
		return 0, 0, err
	}
	if vb != blocks || vw != width {
		return 0, 0, fmt.Errorf("k cache %v and v cache %v differ", kCache.Shape(), vCache.Shape())
	}
	if width == 0 || k.Len()%width != 0 || v.Len() != k.Len() || start < 0 {
		return 0, 0, fmt.Errorf("k %v%v, v %v%v, start %d for rows of %d", k.DType(), k.Shape(), v.DType(), v.Shape(), start, width)
	}
	n = k.Len() / width
	if n == 0 {
		return 0, width, nil
	}
	return n, width, CheckTable(table, blocks, (start+n-1)/blockSize+1)
}

// Check checks the tensors of an Attend over this descriptor (the caches
// [blocks, BlockSize, KVHeads, HeadDim], q and dst [n, Heads*HeadDim]),
// then the descriptor itself (Validate) and the block table, and returns
// the query count n.
func (a *Attention) Check(dst, q, kCache, vCache Tensor) (n int, err error) {
	if a.Heads <= 0 || a.KVHeads <= 0 || a.HeadDim <= 0 {
		return 0, fmt.Errorf("bad heads %d/%d × %d", a.Heads, a.KVHeads, a.HeadDim)
	}
	for _, c := range []Tensor{kCache, vCache} {
		s := c.Shape()
		if len(s) != 4 || s[1] != a.BlockSize || s[2] != a.KVHeads || s[3] != a.HeadDim {
			return 0, fmt.Errorf("cache %v%v, want [blocks %d %d %d]", c.DType(), s, a.BlockSize, a.KVHeads, a.HeadDim)
		}
	}
	if kCache.Shape()[0] != vCache.Shape()[0] {
		return 0, fmt.Errorf("k cache %v and v cache %v differ", kCache.Shape(), vCache.Shape())
	}
	stride := a.Heads * a.HeadDim
	if q.Len()%stride != 0 || dst.Len() != q.Len() {
		return 0, fmt.Errorf("q %v, dst %v, want [n %d]", q.Shape(), dst.Shape(), stride)
	}
	n = q.Len() / stride
	if err := a.Validate(n); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return n, CheckTable(a.Table, kCache.Shape()[0], (a.Keys+a.BlockSize-1)/a.BlockSize)
}

// Numel is the element count of shape, which must have no negative
// dimension.
func Numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		n *= d
	}
	return n, nil
}

// UploadLen checks Upload's raw bytes against dt and shape and returns
// the element count.
func UploadLen(dt DType, raw []byte, shape []int) (int, error) {
	n, err := Numel(shape)
	if err != nil {
		return 0, err
	}
	if dt.Size() == 0 {
		return 0, fmt.Errorf("unsupported dtype %v", dt)
	}
	if len(raw) != n*dt.Size() {
		return 0, fmt.Errorf("%d bytes for %v%v, want %d", len(raw), dt, shape, n*dt.Size())
	}
	return n, nil
}

// CheckRows checks the rows [lo, hi) of a Rows view of t.
func CheckRows(t Tensor, lo, hi int) error {
	s := t.Shape()
	if len(s) == 0 {
		return fmt.Errorf("scalar tensor %v%v has no rows", t.DType(), s)
	}
	if lo < 0 || hi < lo || hi > s[0] {
		return fmt.Errorf("rows [%d,%d) out of range for %v%v", lo, hi, t.DType(), s)
	}
	return nil
}

// Own returns t as T, the tensor type of the backend named backend, and
// panics naming op when it is not one (a tensor of another backend, or
// nil): a programming error.
func Own[T interface {
	Tensor
	comparable
}](backend, op string, t Tensor) T {
	c, ok := t.(T)
	var zero T
	if !ok || c == zero {
		panic(fmt.Sprintf("%s.%s: %T is not a %s tensor", backend, op, t, backend))
	}
	return c
}

// OwnF32 is Own for an argument that must be float32.
func OwnF32[T interface {
	Tensor
	comparable
}](backend, op string, t Tensor) T {
	c := Own[T](backend, op, t)
	if c.DType() != F32 {
		panic(fmt.Sprintf("%s.%s: want an F32 tensor, got %v%v", backend, op, c.DType(), c.Shape()))
	}
	return c
}
