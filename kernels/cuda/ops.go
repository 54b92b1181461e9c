//go:build cuda

package cuda

import (
	"fmt"
	"runtime"

	"github.com/tessera-llm/tessera/kernels"
	"gorgonia.org/cu"
)

const rowThreads = 256 // threads per block of the row-wise kernels (a multiple of 32)

// run executes f on the device goroutine, panics on its error, and keeps
// the tensors alive until it has been submitted.
func (b *Backend) run(f func(d *device) error, ts ...*Tensor) {
	must(b.dev.do(func() error { return f(b.dev) }))
	runtime.KeepAlive(ts)
}

func sameLen(op string, ts ...*Tensor) {
	for _, t := range ts[1:] {
		if t.n != ts[0].n {
			panic(fmt.Sprintf("cuda.%s: length mismatch: %v vs %v", op, ts[0], t))
		}
	}
}

func lastDim(t *Tensor) int {
	if len(t.shape) == 0 {
		return 1
	}
	return t.shape[len(t.shape)-1]
}

// rowOp checks that x and dst are [.., d] with the same row count and
// that each parameter has d elements; it returns (rows, d).
func rowOp(op string, dst, x *Tensor, params ...*Tensor) (int, int) {
	if len(x.shape) == 0 {
		panic(fmt.Sprintf("cuda.%s: scalar input %v", op, x))
	}
	d := lastDim(x)
	if dst.n != x.n || (len(dst.shape) > 0 && lastDim(dst) != d) {
		panic(fmt.Sprintf("cuda.%s: dst %v does not match x %v", op, dst, x))
	}
	for _, p := range params {
		if p != nil && p.n != d {
			panic(fmt.Sprintf("cuda.%s: parameter %v, want %d elements", op, p, d))
		}
	}
	if d == 0 {
		return 0, 0
	}
	return x.n / d, d
}

func checkAct(op string, a kernels.Activation) {
	if a < kernels.ReLU || a > kernels.GELUErf {
		panic(fmt.Sprintf("cuda.%s: unknown activation %d", op, a))
	}
}

// MatMul: dst[n,m] = x[n,k] · w[m,k]ᵀ (+ bias[m]) through cublasGemmEx
// with f32 accumulation (CUBLAS_COMPUTE_32F, no TF32). cuBLAS wants both
// inputs of one type, so for half weights x is first rounded to the
// weight's type (bf16: round to nearest even) in a scratch buffer.
func (b *Backend) MatMul(dst, x, w, bias kernels.Tensor) {
	d, xt, wt := f32("MatMul", dst), f32("MatMul", x), tensor("MatMul", w)
	if len(wt.shape) != 2 {
		panic(fmt.Sprintf("cuda.MatMul: weight %v is not 2-D", wt))
	}
	m, k := wt.shape[0], wt.shape[1]
	if len(xt.shape) == 0 || lastDim(xt) != k {
		panic(fmt.Sprintf("cuda.MatMul: x %v does not end in k=%d of weight %v", xt, k, wt))
	}
	n := 1
	for _, s := range xt.shape[:len(xt.shape)-1] {
		n *= s
	}
	if len(d.shape) == 0 || lastDim(d) != m || d.n != n*m {
		panic(fmt.Sprintf("cuda.MatMul: dst %v, want [%d %d] for x %v · w %v", d, n, m, xt, wt))
	}
	if overlaps(d, xt) {
		panic("cuda.MatMul: dst must not share storage with x")
	}
	bt := optTensor("MatMul", bias)
	if bt != nil && bt.n != m {
		panic(fmt.Sprintf("cuda.MatMul: bias %v, want %d elements", bt, m))
	}
	if n == 0 || m == 0 {
		return
	}
	b.run(func(dv *device) error {
		if k == 0 {
			if err := memsetZero(d); err != nil {
				return err
			}
		} else if wt.dtype == kernels.F32 {
			if err := dv.blas.gemm(m, n, k, wt.ptr(), xt.ptr(), kernels.F32, d.ptr()); err != nil {
				return err
			}
		} else {
			if err := dv.grow(&dv.half, int64(n)*int64(k)*2); err != nil {
				return err
			}
			if err := dv.launch("ts_to_half", elemBlocks(n*k), 1, 256, 0,
				pPtr(dv.half.ptr), pPtr(xt.ptr()), pDType(wt), pI64(n*k)); err != nil {
				return err
			}
			if err := dv.blas.gemm(m, n, k, wt.ptr(), dv.half.ptr, wt.dtype, d.ptr()); err != nil {
				return err
			}
		}
		if dv.syncEach {
			if err := syncErr("MatMul"); err != nil {
				return err
			}
		}
		if bt == nil {
			return nil
		}
		return dv.launch("ts_add_bias", elemBlocks(n*m), 1, 256, 0,
			pPtr(d.ptr()), pPtr(bt.ptr()), pDType(bt), pInt(m), pI64(n*m))
	}, d, xt, wt, bt)
}

// LayerNorm normalises each row of x over its last dim; beta may be nil.
func (b *Backend) LayerNorm(dst, x, gamma, beta kernels.Tensor, eps float32) {
	d, xt, g := f32("LayerNorm", dst), tensor("LayerNorm", x), tensor("LayerNorm", gamma)
	bt := optTensor("LayerNorm", beta)
	n, dim := rowOp("LayerNorm", d, xt, g, bt)
	b.run(func(dv *device) error {
		return dv.launch("ts_layernorm", n, 1, rowThreads, 0, pPtr(d.ptr()), pPtr(xt.ptr()), pDType(xt),
			pPtr(g.ptr()), pDType(g), pPtr(optPtr(bt)), optDType(bt), pInt(dim), pF32(eps))
	}, d, xt, g, bt)
}

// RMSNorm: dst = x / sqrt(mean(x²)+eps) * gamma, per row.
func (b *Backend) RMSNorm(dst, x, gamma kernels.Tensor, eps float32) {
	d, xt, g := f32("RMSNorm", dst), tensor("RMSNorm", x), tensor("RMSNorm", gamma)
	n, dim := rowOp("RMSNorm", d, xt, g)
	b.run(func(dv *device) error {
		return dv.launch("ts_rmsnorm", n, 1, rowThreads, 0, pPtr(d.ptr()), pPtr(xt.ptr()), pDType(xt),
			pPtr(g.ptr()), pDType(g), pInt(dim), pF32(eps))
	}, d, xt, g)
}

// Act applies an activation elementwise; dst may alias x.
func (b *Backend) Act(dst, x kernels.Tensor, a kernels.Activation) {
	d, xt := f32("Act", dst), tensor("Act", x)
	sameLen("Act", d, xt)
	checkAct("Act", a)
	b.run(func(dv *device) error {
		return dv.launch("ts_act", elemBlocks(d.n), 1, 256, 0, pPtr(d.ptr()), pPtr(xt.ptr()), pDType(xt),
			pInt(int(a)), pI64(d.n))
	}, d, xt)
}

// GLU: dst = act(gate) * up; dst may alias gate or up.
func (b *Backend) GLU(dst, gate, up kernels.Tensor, a kernels.Activation) {
	d, g, u := f32("GLU", dst), tensor("GLU", gate), tensor("GLU", up)
	sameLen("GLU", d, g, u)
	checkAct("GLU", a)
	b.run(func(dv *device) error {
		return dv.launch("ts_glu", elemBlocks(d.n), 1, 256, 0, pPtr(d.ptr()), pPtr(g.ptr()), pDType(g),
			pPtr(u.ptr()), pDType(u), pInt(int(a)), pI64(d.n))
	}, d, g, u)
}

// Softmax over the last dim; dst may alias x.
func (b *Backend) Softmax(dst, x kernels.Tensor) {
	d, xt := f32("Softmax", dst), tensor("Softmax", x)
	n, dim := rowOp("Softmax", d, xt)
	b.run(func(dv *device) error {
		return dv.launch("ts_softmax", n, 1, rowThreads, 0, pPtr(d.ptr()), pPtr(xt.ptr()), pDType(xt), pInt(dim))
	}, d, xt)
}

// ApplyRoPE rotates dims [Offset, Offset+Dim) of every head of x in place
// with cos/sin tables built like kernels/cpu's and kept on the device.
func (b *Backend) ApplyRoPE(x kernels.Tensor, pos []int32, r kernels.RoPE) {
	xt := f32("ApplyRoPE", x)
	if r.Heads <= 0 || r.HeadDim <= 0 || r.Dim <= 0 || r.Dim%2 != 0 || r.Offset < 0 || r.Offset+r.Dim > r.HeadDim {
		panic(fmt.Sprintf("cuda.ApplyRoPE: bad RoPE %+v", r))
	}
	stride := r.Heads * r.HeadDim
	if xt.n != len(pos)*stride {
		panic(fmt.Sprintf("cuda.ApplyRoPE: x %v, want [%d %d]", xt, len(pos), stride))
	}
	maxPos := 0
	for _, p := range pos {
		if p < 0 {
			panic(fmt.Sprintf("cuda.ApplyRoPE: negative position %d", p))
		}
		maxPos = max(maxPos, int(p))
	}
	if len(pos) == 0 {
		return
	}
	b.run(func(dv *device) error {
		tab, err := dv.rope(r, maxPos)
		if err != nil {
			return err
		}
		pp, err := dv.upload("pos", int32Bytes(pos))
		if err != nil {
			return err
		}
		return dv.launch("ts_rope", len(pos), 1, 128, 0, pPtr(xt.ptr()), pPtr(pp), pPtr(tab.cos), pPtr(tab.sin),
			pInt(r.Heads), pInt(r.HeadDim), pInt(r.Offset), pInt(r.Dim/2))
	}, xt)
}

// ALiBi adds slopes[h]*(keyOffset+j) to scores [heads, nq, nk] in place.
func (b *Backend) ALiBi(scores kernels.Tensor, slopes []float32, keyOffset int) {
	st := f32("ALiBi", scores)
	if len(st.shape) != 3 || st.shape[0] != len(slopes) {
		panic(fmt.Sprintf("cuda.ALiBi: scores %v, want [%d nq nk]", st, len(slopes)))
	}
	nq, nk := st.shape[1], st.shape[2]
	if st.n == 0 {
		return
	}
	b.run(func(dv *device) error {
		sp, err := dv.upload("slopes", float32Bytes(slopes))
		if err != nil {
			return err
		}
		return dv.launch("ts_alibi", elemBlocks(st.n), 1, 256, 0, pPtr(st.ptr()), pPtr(sp), pInt(nq), pInt(nk),
			pInt(keyOffset), pI64(st.n))
	}, st)
}

// Embedding gathers rows ids of table [vocab, d] (any dtype) into dst.
func (b *Backend) Embedding(dst, table kernels.Tensor, ids []int32) {
	d, t := f32("Embedding", dst), tensor("Embedding", table)
	if len(t.shape) != 2 {
		panic(fmt.Sprintf("cuda.Embedding: table %v is not 2-D", t))
	}
	vocab, dim := t.shape[0], t.shape[1]
	if d.n != len(ids)*dim {
		panic(fmt.Sprintf("cuda.Embedding: dst %v, want [%d %d]", d, len(ids), dim))
	}
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			panic(fmt.Sprintf("cuda.Embedding: id %d outside vocabulary of %d", id, vocab))
		}
	}
	if d.n == 0 {
		return
	}
	b.run(func(dv *device) error {
		ip, err := dv.upload("ids", int32Bytes(ids))
		if err != nil {
			return err
		}
		return dv.launch("ts_embedding", len(ids), 1, rowThreads, 0, pPtr(d.ptr()), pPtr(t.ptr()), pDType(t),
			pPtr(ip), pInt(dim))
	}, d, t)
}

// Add: dst = a + b elementwise; dst may alias a or b.
func (b *Backend) Add(dst, x, y kernels.Tensor) {
	d, at, bt := f32("Add", dst), tensor("Add", x), tensor("Add", y)
	sameLen("Add", d, at, bt)
	b.run(func(dv *device) error {
		return dv.launch("ts_add", elemBlocks(d.n), 1, 256, 0, pPtr(d.ptr()), pPtr(at.ptr()), pDType(at),
			pPtr(bt.ptr()), pDType(bt), pI64(d.n))
	}, d, at, bt)
}

// Scale: dst = x * s; dst may alias x.
func (b *Backend) Scale(dst, x kernels.Tensor, s float32) {
	d, xt := f32("Scale", dst), tensor("Scale", x)
	sameLen("Scale", d, xt)
	b.run(func(dv *device) error {
		return dv.launch("ts_scale", elemBlocks(d.n), 1, 256, 0, pPtr(d.ptr()), pPtr(xt.ptr()), pDType(xt),
			pF32(s), pI64(d.n))
	}, d, xt)
}

// cacheShape checks a KV pool [blocks, blockSize, ...] and returns
// (blocks, width of one token's row).
func cacheShape(op string, c *Tensor, blockSize int) (int, int) {
	if len(c.shape) < 2 || c.shape[1] != blockSize || blockSize <= 0 {
		panic(fmt.Sprintf("cuda.%s: cache %v, want [blocks %d kvHeads headDim]", op, c, blockSize))
	}
	if c.shape[0] == 0 {
		return 0, 0
	}
	return c.shape[0], c.n / (c.shape[0] * blockSize)
}

func checkTable(op string, table []int32, blocks, need int) {
	if need > len(table) {
		panic(fmt.Sprintf("cuda.%s: block table has %d blocks, need %d", op, len(table), need))
	}
	for _, blk := range table[:need] {
		if blk < 0 || int(blk) >= blocks {
			panic(fmt.Sprintf("cuda.%s: block %d outside a pool of %d blocks", op, blk, blocks))
		}
	}
}

// WriteKV stores k, v [n, KVHeads*HeadDim] as tokens start..start+n-1.
func (b *Backend) WriteKV(kCache, vCache, k, v kernels.Tensor, blockSize int, table []int32, start int) {
	kc, vc := f32("WriteKV", kCache), f32("WriteKV", vCache)
	kt, vt := tensor("WriteKV", k), tensor("WriteKV", v)
	blocks, width := cacheShape("WriteKV", kc, blockSize)
	if vb, vw := cacheShape("WriteKV", vc, blockSize); vb != blocks || vw != width {
		panic(fmt.Sprintf("cuda.WriteKV: k cache %v and v cache %v differ", kc, vc))
	}
	if width == 0 || kt.n%width != 0 || vt.n != kt.n || start < 0 {
		panic(fmt.Sprintf("cuda.WriteKV: k %v, v %v, start %d for rows of %d", kt, vt, start, width))
	}
	n := kt.n / width
	if n == 0 {
		return
	}
	need := (start+n-1)/blockSize + 1
	checkTable("WriteKV", table, blocks, need)
	b.run(func(dv *device) error {
		tp, err := dv.upload("table", int32Bytes(table[:need]))
		if err != nil {
			return err
		}
		return dv.launch("ts_write_kv", elemBlocks(n*width), 1, 256, 0, pPtr(kc.ptr()), pPtr(vc.ptr()),
			pPtr(kt.ptr()), pDType(kt), pPtr(vt.ptr()), pDType(vt), pPtr(tp), pInt(blockSize), pInt(width),
			pInt(start), pI64(n*width))
	}, kc, vc, kt, vt)
}

// prefillMin is the query count from which Attend uses the tiled prefill
// kernel (key/value tiles shared by 16 queries) instead of the decode
// kernel (one block per query and head).
const prefillMin = 8

// Attend computes softmax(q·kᵀ·Scale + ALiBi + mask)·v over the paged
// cache, with kernels/cpu's checks. HeadDim is at most 256.
func (b *Backend) Attend(dst, q, kCache, vCache kernels.Tensor, a *kernels.Attention) {
	d, qt := f32("Attend", dst), f32("Attend", q)
	kc, vc := f32("Attend", kCache), f32("Attend", vCache)
	if a.Heads <= 0 || a.KVHeads <= 0 || a.HeadDim <= 0 {
		panic(fmt.Sprintf("cuda.Attend: bad heads %d/%d × %d", a.Heads, a.KVHeads, a.HeadDim))
	}
	if a.HeadDim > maxHeadDim {
		panic(fmt.Sprintf("cuda.Attend: head dim %d above the kernels' %d", a.HeadDim, maxHeadDim))
	}
	for _, c := range []*Tensor{kc, vc} {
		s := c.shape
		if len(s) != 4 || s[1] != a.BlockSize || s[2] != a.KVHeads || s[3] != a.HeadDim {
			panic(fmt.Sprintf("cuda.Attend: cache %v, want [blocks %d %d %d]", c, a.BlockSize, a.KVHeads, a.HeadDim))
		}
	}
	if kc.shape[0] != vc.shape[0] {
		panic(fmt.Sprintf("cuda.Attend: k cache %v and v cache %v differ", kc, vc))
	}
	stride := a.Heads * a.HeadDim
	if qt.n%stride != 0 || d.n != qt.n {
		panic(fmt.Sprintf("cuda.Attend: q %v, dst %v, want [n %d]", qt, d, stride))
	}
	n := qt.n / stride
	if overlaps(d, qt) || overlaps(d, kc) || overlaps(d, vc) {
		panic("cuda.Attend: dst must not share storage with q or the caches")
	}
	if err := a.Validate(n); err != nil {
		panic("cuda.Attend: " + err.Error())
	}
	if n == 0 {
		return
	}
	need := (a.Keys + a.BlockSize - 1) / a.BlockSize
	checkTable("Attend", a.Table, kc.shape[0], need)
	b.run(func(dv *device) error {
		tp, err := dv.upload("table", int32Bytes(a.Table[:need]))
		if err != nil {
			return err
		}
		sp, err := dv.upload("slopes", float32Bytes(a.Slopes))
		if err != nil {
			return err
		}
		mp, err := dv.upload("kvmap", int32Bytes(a.KVMap))
		if err != nil {
			return err
		}
		args := []uint64{pPtr(d.ptr()), pPtr(qt.ptr()), pPtr(kc.ptr()), pPtr(vc.ptr()), pPtr(tp), pPtr(sp), pPtr(mp),
			pInt(a.Heads), pInt(a.KVHeads), pInt(a.HeadDim), pF32(a.Scale), pInt(int(a.Mask)), pInt(a.PrefixLen),
			pInt(a.BlockSize), pInt(a.Keys), pInt(n)}
		if n < prefillMin {
			return dv.launch("ts_attend_decode", n, a.Heads, 256, 0, args...)
		}
		bk := 32
		if a.HeadDim > 128 {
			bk = 16
		}
		return dv.launch("ts_attend_prefill", ceilDiv(n, prefillRows), a.Heads, 128, 2*bk*a.HeadDim*4,
			append(args, pInt(bk))...)
	}, d, qt, kc, vc)
}

// maxHeadDim and prefillRows mirror TS_MAX_HEAD_DIM and TS_BQ in
// kernels/common.cuh and kernels/attention.cu.
const (
	maxHeadDim  = 256
	prefillRows = 16
)

func memsetZero(t *Tensor) error {
	if t.n == 0 {
		return nil
	}
	return cu.MemsetD32(t.ptr(), 0, int64(t.n))
}

func syncErr(op string) error {
	if err := cu.Synchronize(); err != nil {
		return fmt.Errorf("cuda: %s failed: %w", op, err)
	}
	return nil
}
