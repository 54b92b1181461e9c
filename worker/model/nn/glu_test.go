package nn_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
	"github.com/tessera-llm/tessera/worker/weights"
)

// TestGeGLU checks GLM-130B's GeGLU MLP against its formula:
// out = W2·(x1·GELU(x2)) + b2, where [x1, x2] = W1·x + b1 splits in halves.
func TestGeGLU(t *testing.T) {
	const hidden, inner, n = 6, 5, 3
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	w1, b1, w2, b2, x := randn(2*inner*hidden), randn(2*inner), randn(hidden*inner), randn(hidden), randn(n*hidden)
	tensors := []weights.WriteTensor{
		f32(t, "mlp.dense_h_to_4h.weight", w1, 2*inner, hidden), f32(t, "mlp.dense_h_to_4h.bias", b1, 2*inner),
		f32(t, "mlp.dense_4h_to_h.weight", w2, hidden, inner), f32(t, "mlp.dense_4h_to_h.bias", b2, hidden),
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := weights.Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	ckpt, err := weights.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	b, err := kernels.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	l := model.NewLoader(b, ckpt)
	gate, up := nn.FusedGLU(l, "mlp.dense_h_to_4h", inner, inner, hidden, true)
	m := nn.GatedMLP{Gate: gate, Up: up, Down: nn.LoadLinear(l, "mlp.dense_4h_to_h", hidden, inner, true), Act: kernels.GELUErf}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	ws := workspace(t, b, nn.Dims{Hidden: hidden, QWidth: hidden, KVWidth: hidden, FFN: inner}, n)
	dst := b.Alloc(n, hidden)
	m.Forward(b, ws, dst, b.FromFloat32(x, n, hidden))
	got := make([]float32, n*hidden)
	b.Read(dst, got)

	for r := range n {
		xr := x[r*hidden : (r+1)*hidden]
		z := make([]float64, 2*inner)
		for o := range z {
			z[o] = float64(b1[o])
			for i, v := range xr {
				z[o] += float64(w1[o*hidden+i]) * float64(v)
			}
		}
		g := make([]float64, inner)
		for i := range g {
			x1, x2 := z[i], z[inner+i]
			g[i] = x1 * 0.5 * x2 * (1 + math.Erf(x2/math.Sqrt2))
		}
		for o := range hidden {
			want := float64(b2[o])
			for i, v := range g {
				want += float64(w2[o*inner+i]) * v
			}
			if d := math.Abs(float64(got[r*hidden+o]) - want); d > 1e-4*max(1, math.Abs(want)) {
				t.Errorf("row %d out %d: got %g, want %g", r, o, got[r*hidden+o], want)
			}
		}
	}
}

func f32(t *testing.T, name string, v []float32, shape ...int) weights.WriteTensor {
	t.Helper()
	raw, err := weights.EncodeFloat32(weights.DType("F32"), v)
	if err != nil {
		t.Fatal(err)
	}
	return weights.WriteTensor{Name: name, DType: "F32", Shape: shape, Data: raw}
}

// workspace lays out a workspace for one sequence of n tokens.
func workspace(t *testing.T, b kernels.Backend, d nn.Dims, n int) *nn.Workspace {
	t.Helper()
	cache, err := kvcache.New(b, 1, 1, d.KVWidth, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	ws := nn.NewWorkspace(b, d)
	batch := &model.Batch{Tokens: make([]int32, n), Spans: []model.Span{{Seq: &kvcache.Seq{}, N: n}}}
	if err := ws.Prepare(batch, cache, 0); err != nil {
		t.Fatal(err)
	}
	return ws
}
