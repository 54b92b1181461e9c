package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/kernels/cpu"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
	"github.com/tessera-llm/tessera/worker/server"
	"google.golang.org/protobuf/proto"
)

// coordinator is the smallest driver of Runners: it keeps block tables,
// sends each step through the stages and merges the last stage's top-k.
type coordinator struct {
	runners [][]*server.Runner
	tables  *kvcache.Cache
	step    uint64
}

func (c *coordinator) run(t *testing.T, st *tesserav1.Step) []int32 {
	t.Helper()
	var in []float32
	var rows [][]topk.Partial
	for si, ranks := range c.runners {
		results := make([]server.Result, len(ranks))
		errs := make([]error, len(ranks))
		var wg sync.WaitGroup
		for ri, r := range ranks {
			wg.Go(func() { results[ri], errs[ri] = r.Step(context.Background(), st, in) })
		}
		wg.Wait()
		for ri, err := range errs {
			if err != nil {
				t.Fatalf("stage %d rank %d: %v", si, ri, err)
			}
		}
		in = results[0].Hidden
		if si == len(c.runners)-1 {
			rows = make([][]topk.Partial, len(results[0].Rows))
			for ri, res := range results {
				v := ranks[ri].Geometry().Vocab
				for i, row := range res.Rows {
					rows[i] = append(rows[i], topk.Partial{Offset: v[0], Len: v[1] - v[0], IDs: row.Ids, Logits: row.Logits, LSE: row.Lse})
				}
			}
		}
	}
	var ids []int32
	for _, parts := range rows {
		top, _, _ := topk.Merge(parts, 1)
		ids = append(ids, top[0])
	}
	return ids
}

// generate runs greedy decoding of several sequences in one batch.
func (c *coordinator) generate(t *testing.T, prompts [][]int32, steps int) [][]int32 {
	seqs := make([]kvcache.Seq, len(prompts))
	out := make([][]int32, len(prompts))
	next := prompts
	for range steps {
		c.step++
		st := &tesserav1.Step{StepId: c.step, TopK: 1}
		for i, toks := range next {
			if err := c.tables.Reserve(&seqs[i], len(toks)); err != nil {
				t.Fatal(err)
			}
			st.Tokens = append(st.Tokens, toks...)
			st.Spans = append(st.Spans, &tesserav1.SeqSpan{SeqId: uint64(i + 1), Tokens: int32(len(toks)),
				Cached: int32(seqs[i].Len), BlockTable: seqs[i].Table})
		}
		ids := c.run(t, st)
		next = make([][]int32, len(prompts))
		for i, id := range ids {
			seqs[i].Len += int(st.Spans[i].Tokens)
			out[i] = append(out[i], id)
			next[i] = []int32{id}
		}
	}
	return out
}

func newCoordinator(t testing.TB, dir string, pp, tp int, opts ...model.Option) *coordinator {
	t.Helper()
	s, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ws := make([]plan.Worker, pp*tp)
	for i := range ws {
		ws[i].ID = fmt.Sprint(i)
	}
	p, err := plan.New(s, ws, plan.WithShape(pp, tp), plan.WithDTypeBytes(4))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := engine.LoadPipeline(dir, p, append([]model.Option{model.WithCache(512, 8)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	c := &coordinator{tables: kvcache.NewTables(8, 64)}
	for si, st := range p.Stages {
		var ranks []*server.Runner
		for ri := range st.Ranks {
			ranks = append(ranks, server.NewRunner(pl.Rank(si, ri)))
		}
		c.runners = append(c.runners, ranks)
	}
	return c
}

// Batched greedy decoding through Runners gives every sequence its golden
// continuation, whatever else shares its steps.
func TestRunnersBatchGolden(t *testing.T) {
	for _, fx := range []string{"bloom", "llama", "chatglm"} {
		t.Run(fx, func(t *testing.T) {
			dir := filepath.Join(modeltest.Root(t), "testdata/golden", fx)
			g := modeltest.LoadGolden(t, dir)
			c := newCoordinator(t, dir, 2, 2)
			var prompts [][]int32
			for _, cs := range g.Cases {
				prompts = append(prompts, cs.PromptIDs)
			}
			const steps = 8
			got := c.generate(t, prompts, steps)
			for i, cs := range g.Cases {
				if fmt.Sprint(got[i]) != fmt.Sprint(cs.GreedyIDs[:steps]) {
					t.Errorf("case %d: got %v, golden %v", i, got[i], cs.GreedyIDs[:steps])
				}
			}
		})
	}
}

// A token mask on a span leaves only allowed tokens in its last row, and a
// vocabulary split over ranks picks what the whole row picks.
func TestRunnersMaskedGreedy(t *testing.T) {
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/llama")
	g := modeltest.LoadGolden(t, dir)
	whole, split := newCoordinator(t, dir, 1, 1), newCoordinator(t, dir, 1, 2)
	vocab := whole.runners[0][0].Geometry().Vocab[1]
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := g.Cases[0].PromptIDs
	for trial := range 6 {
		allow := make([]byte, (vocab+7)/8)
		for id := range vocab {
			if rng.IntN(50) == 0 {
				allow[id>>3] |= 1 << (id & 7)
			}
		}
		var got [2]int32
		for i, c := range []*coordinator{whole, split} {
			seq := kvcache.Seq{}
			if err := c.tables.Reserve(&seq, len(prompt)); err != nil {
				t.Fatal(err)
			}
			st := &tesserav1.Step{StepId: uint64(trial + 1), TopK: 1, Tokens: prompt,
				Spans: []*tesserav1.SeqSpan{{SeqId: uint64(100 + trial), Tokens: int32(len(prompt)), BlockTable: seq.Table, Allow: allow}}}
			got[i] = c.run(t, st)[0]
			c.tables.Release(&seq)
		}
		if got[0] != got[1] {
			t.Fatalf("trial %d: whole row picks %d, split vocabulary %d", trial, got[0], got[1])
		}
		if allow[got[0]>>3]&(1<<(got[0]&7)) == 0 {
			t.Fatalf("trial %d: picked %d, which the mask does not allow", trial, got[0])
		}
	}
}

// hostTopK is the CPU backend without its TopK, like a backend that lacks
// the kernels.TopKer capability.
type hostTopK struct{ kernels.Backend }

// A backend without TopK gets the same top-k from the runner's host path.
func TestRunnerTopKWithoutCapability(t *testing.T) {
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/bloom")
	g := modeltest.LoadGolden(t, dir)
	prompts := [][]int32{g.Cases[0].PromptIDs}
	const steps = 4
	want := newCoordinator(t, dir, 1, 2).generate(t, prompts, steps)
	if _, ok := kernels.Backend(hostTopK{cpu.New()}).(kernels.TopKer); ok {
		t.Fatal("hostTopK still has TopK")
	}
	got := newCoordinator(t, dir, 1, 2, model.WithBackend(hostTopK{cpu.New()})).generate(t, prompts, steps)
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(got[0]) != fmt.Sprint(g.Cases[0].GreedyIDs[:steps]) {
		t.Errorf("host top-k %v, backend top-k %v, golden %v", got, want, g.Cases[0].GreedyIDs[:steps])
	}
}

func TestRunnerRejectsBadSteps(t *testing.T) {
	c := newCoordinator(t, filepath.Join(modeltest.Root(t), "testdata/golden/bloom"), 1, 1)
	r := c.runners[0][0]
	good := func() *tesserav1.Step {
		return &tesserav1.Step{StepId: 1, TopK: 1, Tokens: []int32{5, 6},
			Spans: []*tesserav1.SeqSpan{{SeqId: 1, Tokens: 2, BlockTable: []int32{0}}}}
	}
	cases := []struct {
		name string
		edit func(st *tesserav1.Step)
	}{
		{"tokens past the spans", func(st *tesserav1.Step) { st.Tokens = append(st.Tokens, 7) }},
		{"no blocks", func(st *tesserav1.Step) { st.Spans[0].BlockTable = nil }},
		{"block outside the pool", func(st *tesserav1.Step) { st.Spans[0].BlockTable = []int32{1 << 20} }},
		{"negative block", func(st *tesserav1.Step) { st.Spans[0].BlockTable = []int32{-1} }},
		{"zero-token span", func(st *tesserav1.Step) { st.Spans[0].Tokens = 0 }},
		{"cached past the table", func(st *tesserav1.Step) { st.Spans[0].Cached = 7 }},
		{"token outside the vocabulary", func(st *tesserav1.Step) { st.Tokens[0] = 1 << 30 }},
		{"huge top-k", func(st *tesserav1.Step) { st.TopK = 1 << 20 }},
		{"oversized token mask", func(st *tesserav1.Step) { st.Spans[0].Allow = make([]byte, 1<<20) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := good()
			tc.edit(st)
			_, err := r.Step(context.Background(), st, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, server.ErrBadStep) && !errors.Is(err, model.ErrBadBatch) {
				t.Fatalf("err = %v, want ErrBadStep or ErrBadBatch", err)
			}
		})
	}
	// The rank still serves after all of that.
	if _, err := r.Step(context.Background(), good(), nil); err != nil {
		t.Fatalf("a good step after bad ones: %v", err)
	}
}

func FuzzRunnerStep(f *testing.F) {
	c := newCoordinator(f, filepath.Join(modeltest.Root(f), "testdata/golden/bloom"), 1, 1)
	r := c.runners[0][0]
	f.Add([]byte{8, 1, 26, 2, 5, 6, 34, 6, 8, 1, 16, 2, 50, 1, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var st tesserav1.Step
		if err := protoUnmarshal(raw, &st); err != nil {
			return
		}
		_, _ = r.Step(context.Background(), &st, nil)
	})
}

func protoUnmarshal(raw []byte, st *tesserav1.Step) error { return proto.Unmarshal(raw, st) }

// KVBlocks counts the blocks the held sequences' tables name, and none
// once they are released.
func TestRunnerKVBlocks(t *testing.T) {
	c := newCoordinator(t, filepath.Join(modeltest.Root(t), "testdata/golden/bloom"), 1, 1)
	r := c.runners[0][0]
	prompts := [][]int32{{5, 6, 7, 8, 9, 10, 11, 12, 13}, {14, 15}}
	c.generate(t, prompts, 2)
	// 9+2 tokens in blocks of 8 take 2 blocks, 2+2 take 1.
	if used, total := r.KVBlocks(); used != 3 || total != 64 {
		t.Fatalf("KVBlocks = %d of %d, want 3 of 64", used, total)
	}
	c.step++
	if _, err := r.Step(context.Background(), &tesserav1.Step{StepId: c.step, Release: []uint64{1, 2}}, nil); err != nil {
		t.Fatal(err)
	}
	if used, _ := r.KVBlocks(); used != 0 {
		t.Fatalf("KVBlocks after release = %d, want 0", used)
	}
}
