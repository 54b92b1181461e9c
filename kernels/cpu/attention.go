package cpu

import (
	"math"

	"github.com/tessera-llm/tessera/kernels"
)

// WriteKV stores k, v [n, KVHeads*HeadDim] as tokens start..start+n-1 of
// the sequence whose block table is table.
func (b *Backend) WriteKV(kCache, vCache, k, v kernels.Tensor, blockSize int, table []int32, start int) {
	kc, vc := f32("WriteKV", kCache), f32("WriteKV", vCache)
	kt, vt := tensor("WriteKV", k), tensor("WriteKV", v)
	n, width, err := kernels.WriteKVShape(kc, vc, kt, vt, blockSize, table, start)
	check("WriteKV", err)
	for i := range n {
		t := start + i
		off := (int(table[t/blockSize])*blockSize + t%blockSize) * width
		widen(kc.F32[off:off+width], kt, i*width)
		widen(vc.F32[off:off+width], vt, i*width)
	}
}

// Attend computes softmax(q·kᵀ·Scale + ALiBi + mask)·v for q
// [n, Heads*HeadDim] into dst [n, Heads*HeadDim], one (query, head) pair
// per work item. Masked keys are skipped, never scored.
func (b *Backend) Attend(dst, q, kCache, vCache kernels.Tensor, a *kernels.Attention) {
	d, qt := f32("Attend", dst), f32("Attend", q)
	kc, vc := f32("Attend", kCache), f32("Attend", vCache)
	n, err := a.Check(d, qt, kc, vc)
	check("Attend", err)
	if overlaps(d, qt) || overlaps(d, kc) || overlaps(d, vc) {
		panic("cpu.Attend: dst must not share storage with q or the caches")
	}
	if n == 0 {
		return
	}
	// Work items are (query, kv head, part): the q heads that share a kv head
	// read each cached row once, token-major, so a group costs one pass over
	// its keys and values. When there are fewer groups than goroutines (a
	// decode with few kv heads), each group's heads are dealt into parts.
	groups := n * a.KVHeads
	parts := min(max((b.threads+groups-1)/groups, 1), (a.Heads+a.KVHeads-1)/a.KVHeads)
	j := b.pool.get(attendKernel)
	j.t[0], j.t[1], j.t[2], j.t[3] = d, qt, kc, vc
	j.attn, j.i[0], j.i[1] = a, n, parts
	b.pool.run(j, groups*parts, 1, n*a.Heads*a.Keys*a.HeadDim*2)
}

func attendKernel(j *job, s *scratch, lo, hi int) {
	a := j.attn
	n, parts := j.i[0], j.i[1]
	hd, bs := a.HeadDim, a.BlockSize
	stride := a.Heads * hd
	kvStride := a.KVHeads * hd
	kc, vc, q, out := j.t[2].F32, j.t[3].F32, j.t[1].F32, j.t[0].F32
	for item := lo; item < hi; item++ {
		i, g, part := item/(a.KVHeads*parts), item/parts%a.KVHeads, item%parts
		// hs: this part's query heads reading kv head g.
		hs, rank := s.heads[:0], 0
		for h := range a.Heads {
			if a.KVHead(h) == g {
				if rank%parts == part {
					hs = append(hs, h)
				}
				rank++
			}
		}
		s.heads = hs
		lo, hi := a.Visible(a.Keys - n + i)
		keys := hi - lo
		if len(hs) == 0 || keys <= 0 {
			continue
		}
		// scores[x*keys+t-lo] is head hs[x]'s score of key t; blocks before
		// the window's first one are never read. Each head takes a block's
		// keys (and then its values) in one call.
		scores := grow(&s.a, len(hs)*keys)
		kvOff := g * hd
		for t0 := lo - lo%bs; t0 < hi; t0 += bs {
			t1, t2 := max(t0, lo), min(t0+bs, hi)
			krows := kc[int(a.Table[t0/bs])*bs*kvStride+kvOff+(t1-t0)*kvStride:]
			for x, h := range hs {
				sc := scores[x*keys+t1-lo : x*keys+t2-lo]
				dotRowsOf(sc, q[i*stride+h*hd:][:hd], krows, kvStride)
				scaleInto(sc, sc, a.Scale)
				if a.Slopes != nil {
					for t := range sc {
						sc[t] += a.Slopes[h] * float32(t1+t)
					}
				}
			}
		}
		for x, h := range hs {
			probs(scores[x*keys : x*keys+keys])
			clear(out[i*stride+h*hd:][:hd])
		}
		for t0 := lo - lo%bs; t0 < hi; t0 += bs {
			t1, t2 := max(t0, lo), min(t0+bs, hi)
			vrows := vc[int(a.Table[t0/bs])*bs*kvStride+kvOff+(t1-t0)*kvStride:]
			for x, h := range hs {
				axpyRowsOf(out[i*stride+h*hd:][:hd], vrows, kvStride, scores[x*keys+t1-lo:x*keys+t2-lo])
			}
		}
	}
}

// dotRowsOf sets out[r] = q · rows[r·ld:][:len(q)] for r < len(out).
func dotRowsOf(out, q, rows []float32, ld int) {
	if len(out) == 0 {
		return
	}
	_ = rows[(len(out)-1)*ld+len(q)-1]
	if useSIMD && len(q) > 0 {
		gemvRowsF32(&q[0], &rows[0], ld, len(q), len(out), &out[0])
		return
	}
	for r := range out {
		out[r] = dot(q, rows[r*ld:])
	}
}

// axpyRowsOf adds a[r]·rows[r·ld:][:len(y)] into y for r = 0, 1, ... in
// order, as len(a) calls of axpy would.
func axpyRowsOf(y, rows []float32, ld int, a []float32) {
	if len(a) == 0 {
		return
	}
	_ = rows[(len(a)-1)*ld+len(y)-1]
	if useSIMD && len(y) > 0 {
		axpyRows(&y[0], &rows[0], ld, len(y), len(a), &a[0])
		return
	}
	for r, w := range a {
		axpy(y, rows[r*ld:], w)
	}
}

// probs turns scores into softmax probabilities in place.
func probs(sc []float32) {
	m := float32(math.Inf(-1))
	for _, v := range sc {
		m = max(m, v)
	}
	if useSIMD && len(sc) > 0 {
		inv := 1 / expSumAVX(&sc[0], &sc[0], len(sc), m)
		mulScaleAVX(&sc[0], &sc[0], nil, len(sc), inv)
		return
	}
	var sum float64
	for t, v := range sc {
		e := float32(math.Exp(float64(v - m)))
		sc[t] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for t := range sc {
		sc[t] *= inv
	}
}

// axpy: y += alpha·x over len(y).
func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	if useSIMD && len(y) > 0 {
		axpyAVX(&y[0], &x[0], len(y), alpha)
		return
	}
	i := 0
	for ; i+4 <= len(y); i += 4 {
		yy, xx := y[i:i+4:i+4], x[i:i+4:i+4]
		yy[0] += alpha * xx[0]
		yy[1] += alpha * xx[1]
		yy[2] += alpha * xx[2]
		yy[3] += alpha * xx[3]
	}
	for ; i < len(y); i++ {
		y[i] += alpha * x[i]
	}
}
