package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
	"github.com/tessera-llm/tessera/worker/weights"
)

// The toy architecture exists only in this file: a card (config parser,
// tensor names and slicing, served causally) and a constructor, with
// tensor names no other architecture uses. Planning, loading, sharding
// and generating it must need nothing else.
func init() {
	spec.Register(spec.Card{ModelType: "toy", Parse: parseToy, Serving: spec.Causal, Tensors: toyTensors})
	model.Register("toy", newToy)
	// toy-unnamed's card forgets the LM head its constructor reads.
	spec.Register(spec.Card{ModelType: "toy-unnamed", Parse: parseToy, Serving: spec.Causal, Tensors: toyTensors[:len(toyTensors)-1]})
	model.Register("toy-unnamed", newToy)
}

var toyTensors = []spec.Rule{
	{Pattern: "toy.tok", Kind: spec.VocabParallel, Axis: spec.AxisVocab, Place: spec.Embeddings},
	{Pattern: "toy.blk.{layer}.n1", Kind: spec.Replicated, Bias: true},
	{Pattern: "toy.blk.{layer}.q", Kind: spec.ColumnParallel, Axis: spec.AxisHeads},
	{Pattern: "toy.blk.{layer}.k", Kind: spec.ColumnParallel, Axis: spec.AxisKVHeads},
	{Pattern: "toy.blk.{layer}.v", Kind: spec.ColumnParallel, Axis: spec.AxisKVHeads},
	{Pattern: "toy.blk.{layer}.o", Kind: spec.RowParallel, Axis: spec.AxisHeads},
	{Pattern: "toy.blk.{layer}.n2", Kind: spec.Replicated, Bias: true},
	{Pattern: "toy.blk.{layer}.up", Kind: spec.ColumnParallel, Axis: spec.AxisMLP},
	{Pattern: "toy.blk.{layer}.down", Kind: spec.RowParallel, Axis: spec.AxisMLP},
	{Pattern: "toy.out_norm", Kind: spec.Replicated, Bias: true, Place: spec.LastStage},
	{Pattern: "toy.head", Kind: spec.VocabParallel, Axis: spec.AxisVocab, Place: spec.LMHead},
}

func parseToy(c spec.Config) (*spec.Spec, error) {
	r := &spec.Reader{C: c}
	s := &spec.Spec{Hidden: r.Int("d"), Layers: r.Int("n"), Heads: r.Int("heads"), KVHeads: r.Int("kv_heads"),
		Intermediate: r.Int("ffn"), Vocab: r.Int("vocab"), Norm: spec.RMSNorm, NormEps: 1e-6,
		Activation: spec.GELUTanh, Positions: spec.RoPE, RopeTheta: 10000, BOS: -1, EOS: -1, PAD: -1}
	if r.Err != nil {
		return nil, r.Err
	}
	if s.Heads > 0 {
		s.HeadDim = s.Hidden / s.Heads
	}
	return s, nil
}

type toy struct {
	nn.Decoder
	tok nn.Embedding
}

func newToy(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h, d, g := s.Hidden, s.HeadDim, o.Geometry(s)
	m := &toy{}
	if g.First {
		m.tok = nn.LoadEmbedding(l, "toy.tok", g, s.Vocab, h, false)
	}
	norm := func(name string) nn.Norm { return nn.NewNorm(s, l.Tensor(name, h), nil) }
	lin := func(name string, out, in int) nn.Linear { return nn.Linear{Weight: l.Matrix(name, out, in)} }
	for i := g.Layers[0]; i < g.Layers[1]; i++ {
		p := fmt.Sprintf("toy.blk.%d.", i)
		m.Layers = append(m.Layers, &nn.PreNormBlock{
			InputNorm: norm(p + "n1"),
			Attention: nn.SelfAttention{
				Q: lin(p+"q", s.Heads*d, h), K: lin(p+"k", s.KVHeads*d, h), V: lin(p+"v", s.KVHeads*d, h),
				O: lin(p+"o", h, s.Heads*d), Heads: g.Heads, KVHeads: g.KVHeads, HeadDim: d, KVMap: g.KVMap,
				Scale: float32(1 / math.Sqrt(float64(d))), Mask: kernels.Causal,
				Rotary: []nn.Rotary{{Dim: d, Theta: float32(s.RopeTheta)}},
			},
			PostAttentionNorm: norm(p + "n2"),
			MLP:               &nn.MLP{Up: lin(p+"up", s.Intermediate, h), Down: lin(p+"down", h, s.Intermediate), Act: kernels.GELUTanh},
		})
	}
	if g.Last {
		m.Head = nn.LMHead{Norm: norm("toy.out_norm"), Proj: lin("toy.head", s.Vocab, h)}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return m, m.Init(s, o.Backend, o, 1)
}

func (m *toy) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	m.tok.Forward(b, ws, ws.X, batch.Tokens)
}

func (m *toy) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	return m.Run(ctx, m, batch, logits)
}

func (m *toy) ForwardStage(ctx context.Context, batch *model.Batch, in, out []float32, logits kernels.Tensor) error {
	return m.Stage(ctx, m, batch, in, out, logits)
}

// writeToy writes a random toy checkpoint, every tensor taken from the
// toy card's rules and shaped as the card says.
func writeToy(t *testing.T, cfg map[string]any) (string, *spec.Spec) {
	t.Helper()
	dir := t.TempDir()
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	card, err := spec.CardOf("toy")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ts []weights.WriteTensor
	for _, r := range card.Tensors {
		layers := []int{-1}
		if r.Place == spec.EveryLayer {
			layers = layers[:0]
			for l := range s.Layers {
				layers = append(layers, l)
			}
		}
		shape := plan.Shape(r, s)
		for _, l := range layers {
			n := 1
			for _, d := range shape {
				n *= d
			}
			vals := make([]float32, n)
			for i := range vals {
				if r.Kind == spec.Replicated {
					vals[i] = 1 + 0.1*float32(rng.NormFloat64())
				} else {
					vals[i] = float32(rng.NormFloat64()) / float32(math.Sqrt(float64(shape[len(shape)-1])))
				}
			}
			data, _ := weights.EncodeFloat32(weights.F32, vals)
			ts = append(ts, weights.WriteTensor{Name: r.Name(l), DType: weights.F32, Shape: shape, Data: data})
		}
	}
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir, s
}

func TestToyCard(t *testing.T) {
	dir, s := writeToy(t, map[string]any{"model_type": "toy", "d": 32, "n": 2, "heads": 4, "kv_heads": 2, "ffn": 48, "vocab": 64})
	ctx := context.Background()
	prompt := []int32{1, 5, 9, 2, 7}
	greedy := engine.SamplerFunc(func(l []float32) int32 { return int32(argmax(l)) })
	generate := func(lm model.CausalLM) []int32 {
		ids, err := engine.New(lm).Generate(ctx, prompt, 6, greedy, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	m, err := model.Load(dir, model.WithCache(64, 4))
	if err != nil {
		t.Fatal(err)
	}
	whole := generate(m.(model.CausalLM))

	ws := []plan.Worker{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
	p, err := plan.New(s, ws, plan.WithShape(2, 2), plan.WithDTypeBytes(4))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := engine.LoadPipeline(dir, p, model.WithCache(64, 4))
	if err != nil {
		t.Fatal(err)
	}
	if got := generate(pl); !slices.Equal(got, whole) {
		t.Errorf("pp=2 tp=2 generates %v, unsharded %v", got, whole)
	}
	if slices.Equal(whole, slices.Repeat(whole[:1], len(whole))) {
		t.Errorf("greedy ids %v repeat one token: the toy model is degenerate", whole)
	}
}

// TestCardNamesEveryTensor: a constructor that reads a tensor its card does
// not name fails to load, naming the tensor.
func TestCardNamesEveryTensor(t *testing.T) {
	dir, _ := writeToy(t, map[string]any{"model_type": "toy", "d": 16, "n": 1, "heads": 2, "kv_heads": 2, "ffn": 16, "vocab": 32})
	cfg := `{"model_type":"toy-unnamed","d":16,"n":1,"heads":2,"kv_heads":2,"ffn":16,"vocab":32}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := model.Load(dir, model.WithCache(16, 4))
	if !errors.Is(err, model.ErrWeights) || !strings.Contains(err.Error(), "toy.head") {
		t.Errorf("load with a card that does not name toy.head: %v", err)
	}
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
