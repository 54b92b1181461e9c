package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// shardTolerance is the bound on sharded vs unsharded logits: the
// all-reduce only reorders float32 sums.
const shardTolerance = 1e-5

// shapes lists the (pp, tp) plans a fixture is checked under: every
// pipeline depth, tensor-parallel widths from 1 to the head count
// (uneven splits and GQA replication included), at least 20 in all.
func shapes(s *spec.Spec) [][2]int {
	var out [][2]int
	tps := []int{1, 2, 3, s.Heads}
	for tp := 4; tp < s.Heads && len(tps) < 7; tp++ {
		tps = append(tps, tp)
	}
	for pp := 1; pp <= s.Layers; pp++ {
		for _, tp := range tps {
			if tp <= s.Heads {
				out = append(out, [2]int{pp, tp})
			}
		}
	}
	for tp := 1; len(out) < 20; tp = tp%s.Heads + 1 {
		out = append(out, [2]int{1 + len(out)%s.Layers, tp})
	}
	return out
}

// workers gives uneven memories so placement is not a plain even split.
func workers(n int, rng *rand.Rand) []plan.Worker {
	ws := make([]plan.Worker, n)
	for i := range ws {
		ws[i] = plan.Worker{ID: fmt.Sprintf("w%d", i), Memory: (1 + rng.Int64N(3)) << 30}
	}
	return ws
}

func TestShardedEqualsUnsharded(t *testing.T) {
	root := modeltest.Root(t)
	fixtures := []struct {
		name, dir string
		dtype     int
	}{
		{"bloom", "testdata/golden/bloom", 4},
		{"llama", "testdata/golden/llama", 4},
		{"chatglm", "testdata/golden/chatglm", 4},
		{"docbloom", "models/docbloom-3m", 2},
	}
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			dir := filepath.Join(root, fx.dir)
			g := modeltest.LoadGolden(t, dir)
			s, whole := loadWhole(t, dir)
			prompt := g.Cases[0].PromptIDs
			steps := 6
			want := run(t, whole, prompt, steps)
			rng := rand.New(rand.NewPCG(7, uint64(len(fx.name))))
			for _, shape := range shapes(s) {
				pp, tp := shape[0], shape[1]
				t.Run(fmt.Sprintf("pp%d_tp%d", pp, tp), func(t *testing.T) {
					p, err := plan.New(s, workers(pp*tp, rng), plan.WithShape(pp, tp), plan.WithDTypeBytes(fx.dtype))
					if err != nil {
						t.Fatal(err)
					}
					pl, err := engine.LoadPipeline(dir, p, model.WithCache(256, 4))
					if err != nil {
						t.Fatal(err)
					}
					got := run(t, pl, prompt, steps)
					for pos := range want.prompt {
						if e := relErr(got.prompt[pos], want.prompt[pos]); e > shardTolerance {
							t.Errorf("prompt position %d: relative error %.2e", pos, e)
						}
					}
					if fmt.Sprint(got.greedy) != fmt.Sprint(want.greedy) || fmt.Sprint(got.merged) != fmt.Sprint(want.greedy) {
						t.Errorf("greedy ids: sharded %v, merged top-k %v, unsharded %v", got.greedy, got.merged, want.greedy)
					}
					checkRanks(t, p, pl, g.Slopes)
				})
			}
		})
	}
}

// TestShardedQ8 runs Q8_0 shards, each quantizing its own slice (row
// groups of a column-parallel split, a row-parallel split's input columns,
// a vocabulary slice of a tied head with its padding row), and holds their
// logits to the Q8_0 bound against the unquantized, unsharded model, as the
// golden check holds the unsharded Q8_0 model.
func TestShardedQ8(t *testing.T) {
	root := modeltest.Root(t)
	for _, name := range []string{"llama", "bloom", "chatglm"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, "testdata/golden", name)
			s, whole := loadWhole(t, dir)
			prompt := modeltest.LoadGolden(t, dir).Cases[0].PromptIDs
			want := run(t, whole, prompt, 1)
			rng := rand.New(rand.NewPCG(9, uint64(len(name))))
			for _, shape := range [][2]int{{1, 2}, {2, 1}, {2, 3}} {
				pp, tp := shape[0], min(shape[1], s.Heads)
				t.Run(fmt.Sprintf("pp%d_tp%d", pp, tp), func(t *testing.T) {
					p, err := plan.New(s, workers(pp*tp, rng), plan.WithShape(pp, tp), plan.WithDTypeBytes(4))
					if err != nil {
						t.Fatal(err)
					}
					pl, err := engine.LoadPipeline(dir, p, model.WithCache(256, 4), model.WithQuantize(kernels.Q8_0))
					if err != nil {
						t.Fatal(err)
					}
					got := run(t, pl, prompt, 1)
					for pos := range want.prompt {
						if e := relErr(got.prompt[pos], want.prompt[pos]); e > modeltest.QuantTolerance {
							t.Errorf("prompt position %d: relative error %.3g > %g", pos, e, modeltest.QuantTolerance)
						}
					}
				})
			}
		})
	}
}

// loadWhole reads dir's spec and loads its model unsharded.
func loadWhole(t *testing.T, dir string) (*spec.Spec, model.CausalLM) {
	t.Helper()
	s, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, m.(model.CausalLM)
}

// checkRanks asserts each rank's ALiBi slopes are the golden slice for its
// heads and that it loaded its planned share of the weights, within 5%.
func checkRanks(t *testing.T, p *plan.Plan, pl *engine.Pipeline, golden []float64) {
	t.Helper()
	for si, st := range p.Stages {
		for ri, r := range st.Ranks {
			if golden != nil {
				got := pl.Rank(si, ri).Geometry().Slopes
				want := golden[r.Heads[0]:r.Heads[1]]
				if len(got) != len(want) {
					t.Fatalf("stage %d rank %d: %d slopes for heads %v", si, ri, len(got), r.Heads)
				}
				for h := range got {
					if math.Abs(float64(got[h])-want[h]) > 1e-7*want[h] {
						t.Errorf("stage %d rank %d head %d: slope %v, golden %v", si, ri, r.Heads[0]+h, got[h], want[h])
					}
				}
			}
			loaded := pl.LoadedBytes(si, ri)
			if d := math.Abs(float64(loaded-r.WeightBytes)) / float64(r.WeightBytes); d > 0.05 {
				t.Errorf("stage %d rank %d loaded %d weight bytes, its share is %d", si, ri, loaded, r.WeightBytes)
			}
		}
	}
}

type outcome struct {
	prompt [][]float32
	greedy []int32
	// merged is greedy decoding from the ranks' top-k partials (the
	// coordinator's path), when the model is a pipeline.
	merged []int32
}

// run scores the prompt, then decodes steps greedy tokens with the KV cache.
func run(t *testing.T, lm model.CausalLM, prompt []int32, steps int) outcome {
	t.Helper()
	ctx := context.Background()
	gen := engine.New(lm)
	rows, err := gen.PromptLogits(ctx, prompt)
	if err != nil {
		t.Fatal(err)
	}
	o := outcome{prompt: rows}
	pl, sharded := lm.(*engine.Pipeline)
	o.greedy, err = gen.Generate(ctx, prompt, steps, engine.SamplerFunc(topk.Argmax), nil, func(engine.Step) {
		if sharded {
			ids, _, _ := topk.Merge(pl.TopK(1)[0], 1)
			o.merged = append(o.merged, ids[0])
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sharded {
		o.merged = o.greedy
	}
	return o
}

func relErr(got, want []float32) float64 {
	w := make([]float64, len(want))
	for i, v := range want {
		w[i] = float64(v)
	}
	return modeltest.RelErr(got, w)
}

func TestPipelineRejectsBadPlans(t *testing.T) {
	root := modeltest.Root(t)
	dir := filepath.Join(root, "testdata/golden/llama")
	s, _ := spec.Load(dir)
	other, _ := spec.Load(filepath.Join(root, "testdata/golden/bloom"))
	p, err := plan.New(other, workers(2, rand.New(rand.NewPCG(1, 1))), plan.WithShape(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.LoadPipeline(dir, p); err == nil {
		t.Fatal("a BLOOM plan loaded a LLaMA checkpoint")
	}
	if _, err := plan.New(s, workers(9, rand.New(rand.NewPCG(1, 1))), plan.WithShape(1, 9)); err == nil {
		t.Fatal("9 ranks for 8 heads were planned")
	}
}

func TestPipelineReleasesBlocks(t *testing.T) {
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/llama")
	s, _ := spec.Load(dir)
	p, err := plan.New(s, workers(4, rand.New(rand.NewPCG(2, 2))), plan.WithShape(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := engine.LoadPipeline(dir, p, model.WithCache(64, 4))
	if err != nil {
		t.Fatal(err)
	}
	free := pl.Cache().FreeBlocks()
	for range 3 {
		if _, err := engine.New(pl).Generate(context.Background(), []int32{1, 5, 9}, 4, engine.SamplerFunc(topk.Argmax), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if pl.Cache().FreeBlocks() != free {
		t.Fatalf("%d free blocks after 3 generations, %d before", pl.Cache().FreeBlocks(), free)
	}
	var seq kvcache.Seq
	long := make([]int32, 65)
	batch := model.Batch{Tokens: long, Spans: []model.Span{{Seq: &seq, N: len(long)}}}
	if err := pl.Forward(context.Background(), &batch, pl.Backend().Alloc(1, s.Vocab)); err == nil {
		t.Fatal("a 65-token prompt fit a 64-token cache")
	}
}
