package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/guide/guidetest"
	"github.com/tessera-llm/tessera/coordinator/sampling"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
	"github.com/tessera-llm/tessera/worker/server"
)

// runners is a Stepper over in-process worker Runners: each step goes
// through the stages in order, the ranks of a stage in parallel, and the
// last stage's ranks answer with their vocabulary slices' partials, as
// the cluster's workers do over NATS.
type runners [][]*server.Runner

func (r runners) PlanVersion(context.Context) (uint64, error) { return 1, nil }

func (r runners) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	var in []float32
	var rows [][]topk.Partial
	for si, ranks := range r {
		results := make([]server.Result, len(ranks))
		errs := make([]error, len(ranks))
		var wg sync.WaitGroup
		for ri, rk := range ranks {
			wg.Go(func() { results[ri], errs[ri] = rk.Step(ctx, st, in) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("stage %d: %w", si, err)
		}
		in = results[0].Hidden
		if si < len(r)-1 {
			continue
		}
		rows = make([][]topk.Partial, len(results[0].Rows))
		for ri, res := range results {
			v := ranks[ri].Geometry().Vocab
			for i, row := range res.Rows {
				rows[i] = append(rows[i], topk.Partial{Offset: v[0], Len: v[1] - v[0], IDs: row.Ids, Logits: row.Logits, LSE: row.Lse})
			}
		}
	}
	return rows, nil
}

const (
	propBlockSize = 16
	propBlocks    = 640
)

// serve starts a scheduler over the model in dir, split over tp
// vocabulary-parallel ranks in one stage.
func serve(t *testing.T, dir string, tp int, eos int32) *Scheduler {
	t.Helper()
	s, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ws := make([]plan.Worker, tp)
	for i := range ws {
		ws[i].ID = fmt.Sprint(i)
	}
	p, err := plan.New(s, ws, plan.WithShape(1, tp), plan.WithDTypeBytes(4))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := engine.LoadPipeline(dir, p, model.WithCache(propBlocks*propBlockSize, propBlockSize))
	if err != nil {
		t.Fatal(err)
	}
	var ranks []*server.Runner
	for ri := range tp {
		ranks = append(ranks, server.NewRunner(pl.Rank(0, ri)))
		if v := ranks[ri].Geometry().Vocab; v[1]-v[0] != s.Vocab/tp {
			t.Fatalf("rank %d of %d holds vocabulary [%d, %d) of %d: not a vocabulary split", ri, tp, v[0], v[1], s.Vocab)
		}
	}
	sc := New(Config{Blocks: propBlocks, BlockSize: propBlockSize, Vocab: s.Vocab, EOS: eos, MaxQueue: 1024, MaxBatch: 128, TokenBudget: 2048},
		runners{ranks})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sc
}

// constraint is one generated constraint, compiled for a model.
type constraint struct {
	spec  guide.Spec
	valid guidetest.Validator
	m     *guide.Matcher
	bytes *guide.Matcher // the same constraint over single bytes, to complete prefixes
}

// run is one generation under a constraint.
type run struct {
	c     *constraint
	label string
	h     *Handle
}

// Every output generated under a random schema or regex, greedy or
// sampled, on the bundled model and on the golden LLaMA fixture, is valid
// by an independent validator when it finishes with "stop", and is a
// prefix of a valid text when it runs out of tokens. Greedy output is the
// same with the vocabulary split over two ranks as on one.
func TestGuidedProperty(t *testing.T) {
	root := modeltest.Root(t)
	const n = 100 // schemas, and as many regexes
	schemas, regexes := guidetest.Seeds(n)
	byteVocab := guide.NewVocab(257, func(id int32) ([]byte, bool) { return []byte{byte(id)}, true }, []int32{256})
	for _, fx := range []struct {
		name, dir string
		prompt    string
		maxTokens int
	}{
		{"docbloom-3m", filepath.Join(root, "models/docbloom-3m"), "Return the settings as JSON.\n", 32},
		{"llama", filepath.Join(root, "testdata/golden/llama"), "", 32},
	} {
		t.Run(fx.name, func(t *testing.T) {
			tk, err := tokenizer.Load(filepath.Join(fx.dir, "tokenizer.json"))
			if err != nil {
				t.Fatal(err)
			}
			var prompt []int32
			if fx.prompt != "" {
				enc, err := tk.Encode(fx.prompt, true)
				if err != nil {
					t.Fatal(err)
				}
				prompt = enc.IDs
			} else {
				prompt = modeltest.LoadGolden(t, fx.dir).Cases[0].PromptIDs
			}
			const eos = 2 // both models'
			whole, split := serve(t, fx.dir, 1, eos), serve(t, fx.dir, 2, eos)
			vocab := guide.NewVocab(whole.cfg.Vocab, tk.Piece, []int32{eos})
			var cs []*constraint
			add := func(spec guide.Spec, valid guidetest.Validator, err error) {
				if err != nil {
					t.Fatalf("validator for %s%s: %v", spec.Pattern, spec.Schema, err)
				}
				m, err := guide.NewMatcher(spec, vocab)
				if errors.Is(err, guide.ErrUnsatisfiable) && fx.name == "llama" {
					return // the fixture's vocabulary spells no byte tokens: some characters are out of reach
				}
				if err != nil {
					t.Fatalf("%s%s: %v", spec.Pattern, spec.Schema, err)
				}
				bm, err := guide.NewMatcher(spec, byteVocab)
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, &constraint{spec, valid, m, bm})
			}
			for _, s := range schemas {
				v, err := guidetest.SchemaValidator(s)
				add(guide.Spec{Kind: guide.JSONSchema, Schema: json.RawMessage(s)}, v, err)
			}
			for _, p := range regexes {
				v, err := guidetest.RegexValidator(p)
				add(guide.Spec{Kind: guide.Regex, Pattern: p}, v, err)
			}
			if len(cs) < 2*n*9/10 {
				t.Fatalf("only %d of %d constraints compile for this vocabulary", len(cs), 2*n)
			}
			var runs []run
			submit := func(s *Scheduler, c *constraint, label string, p sampling.Params) {
				h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: fx.maxTokens, Sampling: p, Guide: c.m})
				if err != nil {
					t.Fatal(err)
				}
				runs = append(runs, run{c, label, h})
			}
			for i, c := range cs {
				submit(whole, c, "greedy", sampling.Params{})
				submit(split, c, "greedy tp=2", sampling.Params{})
				submit(split, c, "sampled tp=2", sampling.Params{Temperature: 1, Seed: uint64(i)})
			}
			finishes := map[string]int{}
			var greedy []int32
			for i, r := range runs {
				var ids []int32
				for tok := range r.h.Tokens() {
					ids = append(ids, tok.ID)
				}
				res := r.h.Wait()
				what := fmt.Sprintf("%s %s%s", r.label, r.c.spec.Pattern, r.c.spec.Schema)
				if res.Err != nil {
					if fx.name == "llama" && errors.Is(res.Err, guide.ErrUnsatisfiable) {
						finishes["unspellable"]++ // see above
						continue
					}
					t.Fatalf("%s: %v", what, res.Err)
				}
				finishes[res.Finish]++
				// What the API returns for a guided sequence: the bytes
				// each token adds mid-sequence.
				var text []byte
				for _, id := range ids {
					p, _ := tk.Piece(id)
					text = append(text, p...)
				}
				switch res.Finish {
				case "stop":
					if err := r.c.valid(text); err != nil {
						t.Errorf("%s: %v", what, err)
					}
				case "length":
					if err := completes(r.c, text); err != nil {
						t.Errorf("%s: ran out of tokens on %q, not a prefix of a valid text: %v", what, text, err)
					}
				default:
					t.Fatalf("%s: finish %q", what, res.Finish)
				}
				switch i % 3 {
				case 0:
					greedy = ids
				case 1:
					if !slices.Equal(ids, greedy) {
						t.Errorf("%s: greedy output %v with the vocabulary split, %v whole", what, ids, greedy)
					}
				}
			}
			t.Logf("%d constraints; finishes %v", len(cs), finishes)
			if finishes["stop"] < len(runs)/4 {
				t.Errorf("only %d of %d runs finished by themselves", finishes["stop"], len(runs))
			}
		})
	}
}

// completes checks that text is a prefix of a valid text: it walks text
// through the constraint over single bytes, finds the shortest way on to a
// match, and asks the independent validator about the whole. The search
// spells ASCII and the bytes of the constraint itself, which keeps it
// small and suffices for the generated constraints.
func completes(c *constraint, text []byte) error {
	var alphabet [256]bool
	for b := range 128 {
		alphabet[b] = true
	}
	for _, b := range []byte(c.spec.Pattern + string(c.spec.Schema)) {
		alphabet[b] = true
	}
	m := c.bytes
	s := m.Start()
	for _, b := range text {
		var err error
		if s, err = m.Advance(s, int32(b)); err != nil {
			return err
		}
	}
	type node struct {
		s    guide.State
		path []byte
	}
	queue := []node{{s, nil}}
	seen := map[guide.State]bool{s: true}
	for len(queue) > 0 && len(seen) < 2048 {
		at := queue[0]
		queue = queue[1:]
		if m.Complete(at.s) {
			return c.valid(append(slices.Clone(text), at.path...))
		}
		mask, err := m.Allowed(at.s)
		if err != nil {
			return err
		}
		for b := range int32(256) {
			if !alphabet[b] || !mask.Has(b) {
				continue
			}
			t, err := m.Advance(at.s, b)
			if err != nil {
				return err
			}
			if !seen[t] {
				seen[t] = true
				queue = append(queue, node{t, append(slices.Clone(at.path), byte(b))})
			}
		}
	}
	return errors.New("no completion found")
}
