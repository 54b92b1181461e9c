package cuda

// These tests run in the default build, without CUDA: the backend's device
// calls go to a recorder behind the driver seam, which hands out addresses
// and records every call but computes nothing. They check the logic around
// the calls (argument checks, launch geometry, cuBLAS shapes, the
// workspace, the upload cache, deferred frees, the device thread); the
// kernels' numbers are checked by the host emulator (make cuda-check) and
// on a GPU (gpu-check.sh).

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

type launchCall struct {
	kernel            string
	gx, gy, bx, shmem int
	args              []uint64
}

type gemmCall struct {
	m, n, k int
	w, x    devPtr
	dt      kernels.DType
	dst     devPtr
}

// recorder is the driver seam's test double.
type recorder struct {
	mu       sync.Mutex
	next     devPtr
	live     map[devPtr]int64
	ops      []string // every call, in order: "alloc", "free", "htod", "sync", "launch ts_x", "gemm", ...
	launches []launchCall
	gemms    []gemmCall
	htods    [][]byte
	frees    []devPtr
	threads  map[int]bool // OS threads the calls came from
	readOut  [][]byte     // what successive dtoh calls return
	openErr  error
	closed   bool
}

func newRecorder() *recorder {
	return &recorder{next: 1 << 20, live: map[devPtr]int64{}, threads: map[int]bool{}}
}

func (r *recorder) note(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	r.threads[threadID()] = true
}

func (r *recorder) open(index int, pick func(int, int) (string, string, error), names []string) (deviceInfo, error) {
	r.note("open")
	if r.openErr != nil {
		return deviceInfo{}, r.openErr
	}
	name, _, err := pick(9, 0)
	return deviceInfo{name: "Recorder", major: 9, ptx: name}, err
}

func (r *recorder) close() error { r.note("close"); r.closed = true; return nil }

func (r *recorder) alloc(bytes int64) (devPtr, error) {
	r.note("alloc")
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.next
	r.next += devPtr((bytes + 255) &^ 255)
	r.live[p] = bytes
	return p, nil
}

func (r *recorder) free(p devPtr) error {
	r.note("free")
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.live[p]; !ok {
		return fmt.Errorf("free of %#x, which is not allocated", p)
	}
	delete(r.live, p)
	r.frees = append(r.frees, p)
	return nil
}

func (r *recorder) memInfo() (int64, int64)       { return 1 << 30, 1 << 31 }
func (r *recorder) memsetD32(devPtr, int64) error { r.note("memset"); return nil }
func (r *recorder) sync() error                   { r.note("sync"); return nil }
func (r *recorder) htod(dst devPtr, src unsafe.Pointer, bytes int64) error {
	r.note("htod")
	r.htods = append(r.htods, slices.Clone(unsafe.Slice((*byte)(src), bytes)))
	return nil
}

func (r *recorder) dtoh(dst unsafe.Pointer, src devPtr, bytes int64) error {
	r.note("dtoh")
	if len(r.readOut) > 0 {
		copy(unsafe.Slice((*byte)(dst), bytes), r.readOut[0])
		r.readOut = r.readOut[1:]
	}
	return nil
}

func (r *recorder) launch(kernel string, gx, gy, bx, shared int, args []uint64) error {
	r.note("launch " + kernel)
	r.launches = append(r.launches, launchCall{kernel, gx, gy, bx, shared, slices.Clone(args)})
	return nil
}

func (r *recorder) gemm(m, n, k int, w, x devPtr, dt kernels.DType, dst devPtr) error {
	r.note("gemm")
	r.gemms = append(r.gemms, gemmCall{m, n, k, w, x, dt, dst})
	return nil
}

// since returns the ops recorded after the first n.
func (r *recorder) since(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops[n:])
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

func newTestBackend(t *testing.T) (*Backend, *recorder) {
	t.Helper()
	rec := newRecorder()
	b, err := newBackend(rec, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.dev.close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b, rec
}

func half(t *testing.T, b *Backend, shape ...int) kernels.Tensor {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	w, err := b.Upload(kernels.BF16, make([]byte, 2*n), shape...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func attention(heads, kvHeads, hd, keys int) *kernels.Attention {
	return &kernels.Attention{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: 0.125, Mask: kernels.Causal,
		BlockSize: 4, Table: []int32{3, 1, 0, 2, 5, 4, 7, 6}, Keys: keys}
}

func TestLaunchGeometry(t *testing.T) {
	b, rec := newTestBackend(t)
	kc, vc := b.Alloc(8, 4, 2, 64), b.Alloc(8, 4, 2, 64)
	kc256, vc256 := b.Alloc(8, 4, 1, 256), b.Alloc(8, 4, 1, 256)
	cases := []struct {
		name string
		op   func()
		want launchCall // args not compared; shmem and geometry are
		arg  map[int]uint64
	}{
		{"Add: 256 elements a block", func() { x := b.Alloc(1000); b.Add(x, x, x) }, launchCall{kernel: "ts_add", gx: 4, gy: 1, bx: 256}, map[int]uint64{5: 1000}},
		{"Add: the grid stops at 65535 blocks", func() { x := b.Alloc(256 * 70000); b.Scale(x, x, 2) },
			launchCall{kernel: "ts_scale", gx: 65535, gy: 1, bx: 256}, map[int]uint64{4: 256 * 70000}},
		{"RMSNorm: a block per row", func() { x := b.Alloc(3, 300); b.RMSNorm(x, x, b.Alloc(300), 1e-6) },
			launchCall{kernel: "ts_rmsnorm", gx: 3, gy: 1, bx: rowThreads}, map[int]uint64{5: 300}},
		{"Embedding: a block per id", func() { b.Embedding(b.Alloc(5, 8), half(t, b, 10, 8), []int32{0, 9, 3, 3, 1}) },
			launchCall{kernel: "ts_embedding", gx: 5, gy: 1, bx: rowThreads}, map[int]uint64{2: uint64(kernels.BF16), 4: 8}},
		{"ApplyRoPE: a block per position", func() {
			b.ApplyRoPE(b.Alloc(3, 2*64), []int32{7, 8, 9}, kernels.RoPE{Heads: 2, HeadDim: 64, Offset: 16, Dim: 32, Theta: 1e4})
		}, launchCall{kernel: "ts_rope", gx: 3, gy: 1, bx: 128}, map[int]uint64{4: 2, 5: 64, 6: 16, 7: 16}},
		{"Attend decode: a block per query and head", func() {
			b.Attend(b.Alloc(1, 4*64), b.Alloc(1, 4*64), kc, vc, attention(4, 2, 64, 9))
		}, launchCall{kernel: "ts_attend_decode", gx: 1, gy: 4, bx: 256}, map[int]uint64{13: 0, 15: 9, 16: 1}},
		{"Attend decode under a sliding window: the window reaches the kernel", func() {
			a := attention(4, 2, 64, 9)
			a.Window = 5
			b.Attend(b.Alloc(1, 4*64), b.Alloc(1, 4*64), kc, vc, a)
		}, launchCall{kernel: "ts_attend_decode", gx: 1, gy: 4, bx: 256}, map[int]uint64{13: 5, 15: 9}},
		{"Attend prefill from 8 queries: 16 a block, 32-key tiles", func() {
			b.Attend(b.Alloc(20, 4*64), b.Alloc(20, 4*64), kc, vc, attention(4, 2, 64, 20))
		}, launchCall{kernel: "ts_attend_prefill", gx: 2, gy: 4, bx: 128, shmem: 2 * 32 * 64 * 4}, map[int]uint64{16: 20, 17: 32}},
		{"Attend prefill, head dim 256: 16-key tiles", func() {
			b.Attend(b.Alloc(8, 2*256), b.Alloc(8, 2*256), kc256, vc256, attention(2, 1, 256, 8))
		}, launchCall{kernel: "ts_attend_prefill", gx: 1, gy: 2, bx: 128, shmem: 2 * 16 * 256 * 4}, map[int]uint64{17: 16}},
		{"TopK: a block of 1024 per row", func() { b.TopK(b.Alloc(3, 50), 100, 5) },
			launchCall{kernel: "ts_topk_lse", gx: 3, gy: 1, bx: topkThreads}, map[int]uint64{1: 50, 3: 5, 4: 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.op()
			if len(rec.launches) == 0 {
				t.Fatal("no launch")
			}
			got := rec.launches[len(rec.launches)-1]
			if got.kernel != tc.want.kernel || got.gx != tc.want.gx || got.gy != tc.want.gy || got.bx != tc.want.bx || got.shmem != tc.want.shmem {
				t.Errorf("launch %s grid %d×%d block %d shared %d, want %s grid %d×%d block %d shared %d",
					got.kernel, got.gx, got.gy, got.bx, got.shmem, tc.want.kernel, tc.want.gx, tc.want.gy, tc.want.bx, tc.want.shmem)
			}
			for i, v := range tc.arg {
				if i >= len(got.args) || got.args[i] != v {
					t.Errorf("argument %d of %v, want %d", i, got.args, v)
				}
			}
		})
	}
}

// Empty work launches nothing and touches no memory.
func TestEmptyOpsLaunchNothing(t *testing.T) {
	b, rec := newTestBackend(t)
	x, w := b.Alloc(0, 8), b.Alloc(4, 8)
	n := rec.count()
	b.Add(x, x, x)
	b.RMSNorm(x, x, b.Alloc(8), 1e-5)
	b.MatMul(b.Alloc(0, 4), x, w, nil)
	b.Embedding(x, w, nil)
	b.ApplyRoPE(x, nil, kernels.RoPE{Heads: 1, HeadDim: 8, Dim: 8, Theta: 1e4})
	b.WriteKV(b.Alloc(2, 4, 8), b.Alloc(2, 4, 8), x, x, 4, nil, 0)
	for _, op := range rec.since(n) {
		if strings.HasPrefix(op, "launch") || op == "gemm" || op == "htod" {
			t.Errorf("empty work made a %s call", op)
		}
	}
}

// Bad arguments panic with a message naming the problem, before any device
// call.
func TestArgumentChecks(t *testing.T) {
	b, rec := newTestBackend(t)
	kc, vc := b.Alloc(4, 4, 2, 8), b.Alloc(4, 4, 2, 8)
	q := b.Alloc(2, 16)
	x := b.Alloc(3, 8)
	cases := []struct {
		name, want string
		op         func()
	}{
		{"MatMul: x does not end in k", "does not end in k=6", func() { b.MatMul(b.Alloc(3, 5), x, b.Alloc(5, 6), nil) }},
		{"MatMul: dst shape", "want [3 5]", func() { b.MatMul(b.Alloc(3, 4), x, b.Alloc(5, 8), nil) }},
		{"MatMul: dst aliases x", "must not share storage", func() { b.MatMul(x, x, b.Alloc(8, 8), nil) }},
		{"MatMul: bias length", "want 5 elements", func() { b.MatMul(b.Alloc(3, 5), x, b.Alloc(5, 8), b.Alloc(4)) }},
		{"MatMul: 3-D weight", "is not 2-D", func() { b.MatMul(b.Alloc(3, 5), x, b.Alloc(5, 8, 1), nil) }},
		{"Add: lengths", "length mismatch", func() { b.Add(x, x, b.Alloc(7)) }},
		{"Act: unknown activation", "unknown activation", func() { b.Act(x, x, 99) }},
		{"RMSNorm: gamma length", "want 8 elements", func() { b.RMSNorm(x, x, b.Alloc(7), 1e-5) }},
		{"Embedding: id outside the vocabulary", "id 10 outside vocabulary of 10", func() { b.Embedding(b.Alloc(1, 8), b.Alloc(10, 8), []int32{10}) }},
		{"ApplyRoPE: odd dim", "bad RoPE", func() { b.ApplyRoPE(x, []int32{0, 1, 2}, kernels.RoPE{Heads: 1, HeadDim: 8, Dim: 7, Theta: 1e4}) }},
		{"ApplyRoPE: negative position", "negative position -1", func() {
			b.ApplyRoPE(x, []int32{0, -1, 2}, kernels.RoPE{Heads: 1, HeadDim: 8, Dim: 8, Theta: 1e4})
		}},
		{"WriteKV: table too short", "block table has 1 blocks, need 2", func() { b.WriteKV(kc, vc, b.Alloc(2, 16), b.Alloc(2, 16), 4, []int32{0}, 3) }},
		{"WriteKV: block outside the pool", "block 4 outside a pool of 4 blocks", func() {
			b.WriteKV(kc, vc, b.Alloc(2, 16), b.Alloc(2, 16), 4, []int32{4}, 0)
		}},
		{"Attend: cache geometry", "want [blocks 4 2 16]", func() { a := attention(2, 2, 16, 2); b.Attend(b.Alloc(1, 32), b.Alloc(1, 32), kc, vc, a) }},
		{"Attend: head dim above the kernels'", "above the kernels' 256", func() {
			a := attention(1, 1, 512, 1)
			b.Attend(b.Alloc(1, 512), b.Alloc(1, 512), b.Alloc(1, 4, 1, 512), b.Alloc(1, 4, 1, 512), a)
		}},
		{"Attend: descriptor (kernels.Attention.Validate)", "3 ALiBi slopes for 2 heads", func() {
			a := attention(2, 2, 8, 2)
			a.Slopes = []float32{1, 2, 3}
			b.Attend(b.Alloc(2, 16), q, kc, vc, a)
		}},
		{"Attend: keys past the table", "block table has 1 blocks, need 2", func() {
			a := attention(2, 2, 8, 5)
			a.Table = []int32{0}
			b.Attend(b.Alloc(2, 16), q, kc, vc, a)
		}},
		{"Attend: dst aliases q", "must not share storage", func() { b.Attend(q, q, kc, vc, attention(2, 2, 8, 2)) }},
		{"TopK: half logits", "F32 logits", func() { b.TopK(half(t, b, 2, 4), 0, 1) }},
		{"TopK: negative k", "k -1", func() { b.TopK(x, 0, -1) }},
		{"Write: length", "src has 2 elements", func() { b.Write(x, []float32{1, 2}) }},
		{"Rows: range", "rows [2,5) out of range", func() { b.Rows(x, 2, 5) }},
		{"View: element count", "has 25 elements", func() { b.View(x, 5, 5) }},
		{"a foreign tensor", "is not a cuda tensor", func() { b.Add(x, x, foreign{}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := rec.count()
			func() {
				defer func() {
					r := recover()
					if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
						t.Errorf("panic %v, want one saying %q", r, tc.want)
					}
				}()
				tc.op()
			}()
			// The arguments' own allocations come first; nothing after
			// the check may reach the device.
			for _, op := range rec.since(n) {
				if op != "alloc" && op != "memset" && op != "htod" {
					t.Errorf("a rejected call made a %s call", op)
				}
			}
		})
	}
	if _, err := b.Upload(kernels.Q8_0, nil, 4); err == nil || !strings.Contains(err.Error(), "unsupported dtype") {
		t.Errorf("Upload(Q8_0) = %v, want an unsupported-dtype error", err)
	}
	if _, err := b.Upload(kernels.BF16, make([]byte, 6), 2, 2); err == nil || !strings.Contains(err.Error(), "6 bytes") {
		t.Errorf("Upload of 6 bytes for 2×2 bf16 = %v, want an error naming the size", err)
	}
}

type foreign struct{ kernels.Tensor }

// MatMul's cuBLAS calls: the shapes of a row-major x·wᵀ, the half
// workspace that converts x for half weights, and the bias launch.
func TestMatMulCalls(t *testing.T) {
	b, rec := newTestBackend(t)
	x, dst := b.Alloc(3, 4), b.Alloc(3, 6)
	w32, w16 := b.Alloc(6, 4), half(t, b, 6, 4)
	xp, dp := tensor("", x).ptr(), tensor("", dst).ptr()

	b.MatMul(dst, x, w32, nil)
	want := gemmCall{m: 6, n: 3, k: 4, w: tensor("", w32).ptr(), x: xp, dt: kernels.F32, dst: dp}
	if got := rec.gemms[len(rec.gemms)-1]; got != want {
		t.Errorf("f32 gemm %+v, want %+v", got, want)
	}

	n := rec.count()
	b.MatMul(dst, x, w16, b.Alloc(6))
	ops := rec.since(n)
	wantOps := []string{"alloc", "memset", "alloc", "launch ts_to_half", "gemm", "launch ts_add_bias"}
	if !slices.Equal(ops, wantOps) {
		t.Errorf("bf16 MatMul with bias made %v, want %v", ops, wantOps)
	}
	ws := b.dev.half
	if ws.bytes != 3*4*2 {
		t.Errorf("workspace of %d bytes, want %d (x as bf16)", ws.bytes, 3*4*2)
	}
	conv := rec.launches[len(rec.launches)-2]
	if !slices.Equal(conv.args, []uint64{uint64(ws.ptr), uint64(xp), uint64(kernels.BF16), 12}) {
		t.Errorf("ts_to_half args %v", conv.args)
	}
	want = gemmCall{m: 6, n: 3, k: 4, w: tensor("", w16).ptr(), x: ws.ptr, dt: kernels.BF16, dst: dp}
	if got := rec.gemms[len(rec.gemms)-1]; got != want {
		t.Errorf("bf16 gemm %+v, want %+v", got, want)
	}

	// A smaller x reuses the workspace; a larger one frees it once the
	// device is idle and takes at least twice the size.
	small, smallX := b.Alloc(1, 6), b.Alloc(1, 4)
	n = rec.count()
	b.MatMul(small, smallX, w16, nil)
	if slices.Contains(rec.since(n), "alloc") {
		t.Errorf("a smaller MatMul reallocated the workspace: %v", rec.since(n))
	}
	old := b.dev.half.ptr
	big, bigX := b.Alloc(5, 6), b.Alloc(5, 4)
	n = rec.count()
	b.MatMul(big, bigX, w16, nil)
	if got := b.dev.half.bytes; got != 2*24 {
		t.Errorf("grown workspace of %d bytes, want %d", got, 2*24)
	}
	ops = rec.since(n)
	if i, j := slices.Index(ops, "sync"), slices.Index(ops, "free"); i < 0 || j < i || rec.frees[len(rec.frees)-1] != old {
		t.Errorf("growing the workspace made %v; want the old one freed after a sync", ops)
	}

	// k = 0: no GEMM, dst zeroed.
	n = rec.count()
	b.MatMul(b.Alloc(2, 3), b.Alloc(2, 0), b.Alloc(3, 0), nil)
	if ops := rec.since(n); slices.Contains(ops, "gemm") || ops[len(ops)-1] != "memset" {
		t.Errorf("k=0 MatMul made %v, want a memset and no gemm", ops)
	}
}

// Block tables, slopes and ids are uploaded once per content: the layers
// of a step share one copy, and a full cache is freed after a sync.
func TestUploadCache(t *testing.T) {
	b, rec := newTestBackend(t)
	kc, vc := b.Alloc(8, 4, 2, 8), b.Alloc(8, 4, 2, 8)
	k := b.Alloc(3, 16)
	table := []int32{5, 2, 7, 1}
	n := len(rec.htods)
	for range 3 { // three layers, one table
		b.WriteKV(kc, vc, k, k, 4, table, 2)
	}
	if got := len(rec.htods) - n; got != 1 {
		t.Fatalf("three WriteKVs with one table uploaded %d times", got)
	}
	// Tokens 2..4 need blocks 0 and 1 of the table only.
	if got := rec.htods[len(rec.htods)-1]; !slices.Equal(got, int32Bytes(table[:2])) {
		t.Errorf("uploaded table bytes %v, want the first two blocks", got)
	}
	last := rec.launches[len(rec.launches)-1]
	if last.kernel != "ts_write_kv" || last.args[7] != 4 || last.args[8] != 16 || last.args[9] != 2 || last.args[10] != 48 {
		t.Errorf("ts_write_kv args %v, want block size 4, width 16, start 2, 48 elements", last.args)
	}
	b.WriteKV(kc, vc, k, k, 4, []int32{5, 3}, 2)
	if got := len(rec.htods) - n; got != 2 {
		t.Errorf("a new table made %d uploads in all, want 2", got)
	}

	// Fill the cache: the next upload frees every cached copy, after a sync.
	must(b.dev.do(func() error {
		for i := len(b.dev.meta); i < metaLimit; i++ {
			if _, err := b.dev.upload("ids", int32Bytes([]int32{int32(i)})); err != nil {
				return err
			}
		}
		return nil
	}))
	if len(b.dev.meta) != metaLimit {
		t.Fatalf("cache holds %d, want %d", len(b.dev.meta), metaLimit)
	}
	frees, n := len(rec.frees), rec.count()
	b.WriteKV(kc, vc, k, k, 4, []int32{6, 6}, 0)
	if got := len(rec.frees) - frees; got != metaLimit {
		t.Errorf("a full cache freed %d copies, want %d", got, metaLimit)
	}
	if ops := rec.since(n); slices.Index(ops, "sync") > slices.Index(ops, "free") {
		t.Errorf("freed before the device was idle: %v", ops)
	}
	if len(b.dev.meta) != 1 {
		t.Errorf("after the reset the cache holds %d copies, want 1", len(b.dev.meta))
	}
}

// A tensor the GC collects is freed on the device goroutine, after a
// sync, before the next op runs.
func TestDeferredFree(t *testing.T) {
	b, rec := newTestBackend(t)
	p := func() devPtr { return tensor("", b.Alloc(1024)).ptr() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		b.dev.freeMu.Lock()
		queued := slices.Contains(b.dev.freeList, p)
		b.dev.freeMu.Unlock()
		if queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collected tensor was never queued for freeing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slices.Contains(rec.frees, p) {
		t.Fatal("freed on the GC's goroutine, not the device's")
	}
	n := rec.count()
	x := b.Alloc(4)
	b.Scale(x, x, 2)
	ops := rec.since(n)
	if !slices.Contains(rec.frees, p) || len(ops) < 2 || ops[0] != "sync" || ops[1] != "free" {
		t.Errorf("the next op made %v; want sync, free, then its own calls", ops)
	}
}

// TopK reads back rows·k ids and logits and rows sums, and splits them
// into rows.
func TestTopKReadback(t *testing.T) {
	b, rec := newTestBackend(t)
	ids := []int32{107, 103, 200, 201}
	vals := []float32{9, 8, 7, 7}
	lse := []float64{10.5, 11.25}
	rec.readOut = [][]byte{int32Bytes(ids), float32Bytes(vals), unsafe.Slice((*byte)(unsafe.Pointer(&lse[0])), 16)}
	got := b.TopK(b.Alloc(2, 50), 100, 2)
	want := []kernels.RowTopK{{IDs: ids[:2], Logits: vals[:2], LSE: 10.5}, {IDs: ids[2:], Logits: vals[2:], LSE: 11.25}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("TopK rows %+v, want %+v", got, want)
	}
	if tail := rec.since(rec.count() - 4); !slices.Equal(tail, []string{"launch ts_topk_lse", "dtoh", "dtoh", "dtoh"}) {
		t.Errorf("TopK made %v", tail)
	}
	if ws := b.dev.topk.bytes; ws != 2*2*4*2+2*8 {
		t.Errorf("TopK workspace of %d bytes, want %d", ws, 2*2*4*2+2*8)
	}
	// k = 0 reads the sums only; a row of no logits reads nothing.
	n := rec.count()
	b.TopK(b.Alloc(2, 50), 0, 0)
	if ops := rec.since(n); slices.Equal(ops[len(ops)-2:], []string{"dtoh", "dtoh"}) || ops[len(ops)-1] != "dtoh" {
		t.Errorf("k=0 made %v, want one read", ops)
	}
	n = rec.count()
	if rows := b.TopK(b.Alloc(2, 0), 0, 3); len(rows) != 2 || rows[0].IDs != nil {
		t.Errorf("empty rows gave %+v", rows)
	}
	if slices.ContainsFunc(rec.since(n), func(op string) bool { return op == "dtoh" || strings.HasPrefix(op, "launch") }) {
		t.Errorf("empty rows reached the device: %v", rec.since(n))
	}
}

// All device calls, from however many goroutines, run on the one OS thread
// that opened the context, and Close releases it there.
func TestDeviceThread(t *testing.T) {
	rec := newRecorder()
	b, err := newBackend(rec, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				x := b.Alloc(64)
				b.Add(x, x, x)
			}
		})
	}
	wg.Wait()
	if n := b.Launches(); n != 400 {
		t.Errorf("%d launches counted, want 400", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rec.threads) != 1 {
		t.Errorf("device calls came from %d OS threads, want 1", len(rec.threads))
	}
	if !rec.closed || rec.ops[0] != "open" || rec.ops[len(rec.ops)-1] != "close" {
		t.Errorf("calls began with %q and ended with %q, want open … close", rec.ops[0], rec.ops[len(rec.ops)-1])
	}
}

func TestOpenFailure(t *testing.T) {
	rec := newRecorder()
	rec.openErr = errors.New("CUDA_ERROR_NO_DEVICE")
	if _, err := newBackend(rec, 0, false); err == nil || !strings.Contains(err.Error(), "NO_DEVICE") {
		t.Errorf("newBackend = %v, want the driver's error", err)
	}
	if ops := rec.since(0); !slices.Equal(ops, []string{"open"}) {
		t.Errorf("a failed open went on to %v", ops)
	}
}

// syncEach waits after every launch and names the kernel that failed.
func TestSyncEach(t *testing.T) {
	b, rec := newTestBackend(t)
	b.SetSyncEach(true)
	x := b.Alloc(8)
	n := rec.count()
	b.Scale(x, x, 3)
	if ops := rec.since(n); !slices.Equal(ops, []string{"launch ts_scale", "sync"}) {
		t.Errorf("with syncEach a launch made %v", ops)
	}
}

func TestPTXFor(t *testing.T) {
	for _, tc := range []struct {
		major, minor int
		want         string
	}{{9, 0, "tessera.sm_90.ptx"}, {10, 0, "tessera.sm_90.ptx"}, {8, 0, "tessera.compute_80.ptx"}, {8, 9, "tessera.compute_80.ptx"}} {
		name, image, err := ptxFor(tc.major, tc.minor)
		if err != nil || name != tc.want {
			t.Errorf("sm_%d%d: %s, %v; want %s", tc.major, tc.minor, name, err, tc.want)
			continue
		}
		// Every kernel Open resolves is an entry of the image.
		for _, k := range kernelNames {
			if !strings.Contains(image, ".entry "+k+"(") {
				t.Errorf("%s has no entry %s", name, k)
			}
		}
	}
}

func TestKernelParameters(t *testing.T) {
	if pInt(-2) != 0xfffffffe || pI64(-2) != 0xfffffffffffffffe || pF32(1) != 0x3f800000 {
		t.Error("parameter slots are not little-endian values of the parameter's own size")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "overflows int32") {
			t.Errorf("pInt(1<<31) panicked with %v", r)
		}
	}()
	pInt(1 << 31)
}
