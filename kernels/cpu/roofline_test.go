package cpu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// rooflineBytes is the weight size of BenchmarkRoofline: well past the
// last-level cache, so every byte comes from DRAM as in decode.
const rooflineBytes = 128 << 20

// BenchmarkRoofline puts the decode GEMV's weight streaming next to the
// machine's: "read" is streamRead (loads and XORs, nothing else) over
// rooflineBytes split across the threads, "gemv" a MatMul of one x row
// with a weight of the same size in each format (k = 1024, the reference
// shape's hidden width), the way decode calls it. Both report weightGB/s:
//
//	go test -run '^$' -bench Roofline -benchtime 20x ./kernels/cpu
func BenchmarkRoofline(b *testing.B) {
	if !hasAVX512 {
		b.Skip("streamRead is an AVX-512 kernel")
	}
	r := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, rooflineBytes)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("read/threads=%d", threads), func(b *testing.B) {
			part := len(buf) / threads
			sec := measure(b, func() {
				var wg sync.WaitGroup
				for t := range threads {
					wg.Go(func() { streamRead(&buf[t*part], part) })
				}
				wg.Wait()
			})
			b.ReportMetric(float64(len(buf))/sec/1e9, "weightGB/s")
		})
	}
	const k = 1024
	for _, dt := range []kernels.DType{kernels.F32, kernels.BF16, kernels.F16, kernels.Q8_0} {
		m := rooflineBytes / (k * max(dt.Size(), 1))
		w := rooflineWeight(r, buf, dt, m, k)
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("gemv/%v/threads=%d", dt, threads), func(b *testing.B) {
				be := New(WithThreads(threads))
				x := be.FromFloat32(randVec(r, k), 1, k)
				dst := be.Alloc(1, m)
				sec := measure(b, func() { be.MatMul(dst, x, w, nil) })
				b.ReportMetric(float64(weightBytes(dt, m, k))/sec/1e9, "weightGB/s")
			})
		}
	}
}

// rooflineWeight makes an [m, k] weight of dt from random bytes: any bits
// do for timing, as long as the pages are real (not the zero page) and
// the floats are finite (bf16/f16 exponents are masked below the top).
func rooflineWeight(r *rand.Rand, buf []byte, dt kernels.DType, m, k int) *Tensor {
	t := &Tensor{dtype: dt, shape: []int{m, k}}
	switch dt {
	case kernels.F32:
		t.F32 = randVec(r, m*k)
	case kernels.BF16, kernels.F16:
		t.Half = make([]uint16, m*k)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&t.Half[0])), 2*m*k), buf)
		for i := range t.Half {
			t.Half[i] &= 0xbfff
		}
	case kernels.Q8_0:
		kb := q8Blocks(k)
		t.Q8 = make([]int8, m*kb*q8Block)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&t.Q8[0])), len(t.Q8)), buf)
		t.Scales = make([]uint16, m*kb)
		for i := range t.Scales {
			t.Scales[i] = toF16(1.0 / 127)
		}
	}
	return t
}
