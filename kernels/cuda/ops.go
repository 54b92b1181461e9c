package cuda

import (
	"fmt"
	"runtime"

	"github.com/tessera-llm/tessera/kernels"
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

// check panics with a failed shared argument check, naming the op.
func check(op string, err error) {
	if err != nil {
		panic("cuda." + op + ": " + err.Error())
	}
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
	bt := optTensor("MatMul", bias)
	n, m, k, err := kernels.MatMulShape(d, xt, wt, bias)
	check("MatMul", err)
	if overlaps(d, xt) {
		panic("cuda.MatMul: dst must not share storage with x")
	}
	if n == 0 || m == 0 {
		return
	}
	b.run(func(dv *device) error {
		if k == 0 {
			if err := dv.drv.memsetD32(d.ptr(), int64(d.n)); err != nil {
				return err
			}
		} else if wt.dtype == kernels.F32 {
			if err := dv.drv.gemm(m, n, k, wt.ptr(), xt.ptr(), kernels.F32, d.ptr()); err != nil {
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
			if err := dv.drv.gemm(m, n, k, wt.ptr(), dv.half.ptr, wt.dtype, d.ptr()); err != nil {
				return err
			}
		}
		if dv.syncEach {
			if err := dv.syncErr("MatMul"); err != nil {
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

// ApplyRoPE rotates dims [Offset, Offset+Dim) of every head of x in place
// with cos/sin tables built like kernels/cpu's and kept on the device.
func (b *Backend) ApplyRoPE(x kernels.Tensor, pos []int32, r kernels.RoPE) {
	xt := f32("ApplyRoPE", x)
	maxPos, err := r.Check(xt, pos)
	check("ApplyRoPE", err)
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

// WriteKV stores k, v [n, KVHeads*HeadDim] as tokens start..start+n-1.
func (b *Backend) WriteKV(kCache, vCache, k, v kernels.Tensor, blockSize int, table []int32, start int) {
	kc, vc := f32("WriteKV", kCache), f32("WriteKV", vCache)
	kt, vt := tensor("WriteKV", k), tensor("WriteKV", v)
	n, width, err := kernels.WriteKVShape(kc, vc, kt, vt, blockSize, table, start)
	check("WriteKV", err)
	if n == 0 {
		return
	}
	need := (start+n-1)/blockSize + 1
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
	if a.HeadDim > maxHeadDim {
		panic(fmt.Sprintf("cuda.Attend: head dim %d above the kernels' %d", a.HeadDim, maxHeadDim))
	}
	n, err := a.Check(d, qt, kc, vc)
	check("Attend", err)
	if overlaps(d, qt) || overlaps(d, kc) || overlaps(d, vc) {
		panic("cuda.Attend: dst must not share storage with q or the caches")
	}
	if n == 0 {
		return
	}
	need := (a.Keys + a.BlockSize - 1) / a.BlockSize
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
			pInt(a.Window), pInt(a.BlockSize), pInt(a.Keys), pInt(n)}
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
