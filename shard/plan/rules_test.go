package plan

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/tessera-llm/tessera/shard/spec"
)

// header reads the tensor shapes of a safetensors file.
func header(t *testing.T, path string) map[string][]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err) // the fixtures are committed: a missing one is a failure, not a skip
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(f, raw); err != nil {
		t.Fatal(err)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for name, v := range h {
		if name == "__metadata__" {
			continue
		}
		var e struct{ Shape []int }
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		out[name] = e.Shape
	}
	return out
}

// chatglmSpec is the ChatGLM fixture's shape, optionally with GLM-130B's
// GeGLU MLP.
func chatglmSpec(gated bool) *spec.Spec {
	return &spec.Spec{Arch: "chatglm", Hidden: 64, Layers: 3, Heads: 4, KVHeads: 4, HeadDim: 16, Intermediate: 160,
		Vocab: 512, Positions: spec.RoPE2D, NormEps: 1e-5, Gated: gated}
}

func fixtureSpec(t *testing.T, dir string) *spec.Spec {
	s, err := spec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var fixtures = map[string]string{
	"bloom":    "../../testdata/golden/bloom",
	"llama":    "../../testdata/golden/llama",
	"chatglm":  "../../testdata/golden/chatglm",
	"docbloom": "../../models/docbloom-3m",
}

// TestEstimateMatchesCheckpoint: a whole-model plan's weight estimate is
// the checkpoint's parameter count times the element size, and splitting
// adds only the replicated tensors (norms, and kv heads where replicated).
func TestEstimateMatchesCheckpoint(t *testing.T) {
	for name, dir := range fixtures {
		t.Run(name, func(t *testing.T) {
			s := fixtureSpec(t, dir)
			var params int64
			for _, shape := range header(t, filepath.Join(dir, "model.safetensors")) {
				n := int64(1)
				for _, d := range shape {
					n *= int64(d)
				}
				params += n
			}
			one, err := New(s, equalWorkers(1, 0), WithDTypeBytes(4))
			if err != nil {
				t.Fatal(err)
			}
			if got := one.Stages[0].Ranks[0].WeightBytes; got != 4*params {
				t.Errorf("whole-model estimate %d bytes, checkpoint %d", got, 4*params)
			}
			tp := 3
			split, err := New(s, equalWorkers(tp, 0), WithShape(1, tp), WithDTypeBytes(4))
			if err != nil {
				t.Fatal(err)
			}
			rules, _ := Rules(s.Arch)
			var replicated int64
			for _, r := range rules {
				if r.Kind != spec.Replicated || !split.Needs(0, r, 0) {
					continue
				}
				n := int64(Shape(r, s)[0])
				if r.Place == spec.EveryLayer {
					n *= int64(s.Layers)
				}
				replicated += n
			}
			var sum int64
			for _, r := range split.Stages[0].Ranks {
				sum += r.WeightBytes
			}
			if s.KVHeads == s.Heads {
				if want := 4 * (params + int64(tp-1)*replicated); sum != want {
					t.Errorf("tp=%d ranks hold %d bytes, want %d", tp, sum, want)
				}
			} else if sum <= 4*(params+int64(tp-1)*replicated) {
				t.Errorf("tp=%d ranks hold %d bytes: kv replication not counted", tp, sum)
			}
		})
	}
}

// TestRulesCoverFixtures: every tensor of each fixture checkpoint has a
// rule, the rule's shape is the tensor's, and every rule names a tensor.
func TestRulesCoverFixtures(t *testing.T) {
	for name, dir := range fixtures {
		t.Run(name, func(t *testing.T) {
			s := fixtureSpec(t, dir)
			shapes := header(t, filepath.Join(dir, "model.safetensors"))
			rules, err := Rules(s.Arch)
			if err != nil {
				t.Fatal(err)
			}
			used := map[string]bool{}
			for tensor, shape := range shapes {
				r, layer, ok := spec.Lookup(rules, tensor)
				if !ok {
					t.Errorf("no rule for %s", tensor)
					continue
				}
				if (r.Place == spec.EveryLayer) != (layer >= 0) || layer >= s.Layers {
					t.Errorf("%s: layer %d for place %s", tensor, layer, r.Place)
				}
				used[r.Pattern] = true
				if got := Shape(r, s); !slices.Equal(got, shape) {
					t.Errorf("%s: rule shape %v, checkpoint %v", tensor, got, shape)
				}
			}
			for _, r := range rules {
				if !used[r.Pattern] && !(r.Place == spec.LMHead && s.TiedEmbeddings) {
					t.Errorf("rule %s matches no tensor", r.Pattern)
				}
			}
		})
	}
}

// TestSlicesTile: over every rank of a stage, each element of a sharded
// tensor is loaded exactly once, a replicated one by every rank, a
// row-parallel bias by rank 0 only, and kv projections at least once.
func TestSlicesTile(t *testing.T) {
	cases := []struct {
		name string
		s    *spec.Spec
		tp   int
	}{
		{"bloom 12 heads over 5", bloomSpec(12, 2), 5},
		{"llama gqa over 3", llamaSpec(8, 2, 2), 3},
		{"llama gqa over 4", llamaSpec(8, 2, 2), 4},
		{"chatglm over 3", chatglmSpec(false), 3},
		{"chatglm glu over 3", chatglmSpec(true), 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.s, equalWorkers(tc.tp, 0), WithShape(1, tc.tp))
			if err != nil {
				t.Fatal(err)
			}
			rules, _ := Rules(tc.s.Arch)
			for _, rule := range rules {
				shape := Shape(rule, tc.s)
				cols := 1
				if len(shape) == 2 {
					cols = shape[1]
				}
				seen := make([]int, shape[0]*cols)
				var elems int64
				for _, r := range p.Stages[0].Ranks {
					sl := r.Slice(rule, tc.s)
					if !slices.Equal(sl.Rows, r.RowRanges(rule, tc.s)) || sl.Cols != r.ColRange(rule, tc.s) {
						t.Fatalf("%s: Slice disagrees with RowRanges/ColRange", rule.Pattern)
					}
					elems += sl.Elements()
					ls := sl.LocalShape()
					n := int64(1)
					for _, d := range ls {
						n *= int64(d)
					}
					if n != sl.Elements() {
						t.Errorf("%s rank %d: local shape %v has %d elements, slice %d", rule.Pattern, r.Index, ls, n, sl.Elements())
					}
					for _, rr := range sl.Rows {
						for i := rr[0]; i < rr[1]; i++ {
							for j := sl.Cols[0]; j < sl.Cols[1]; j++ {
								seen[i*cols+j]++
							}
						}
					}
				}
				want := 1
				if rule.Kind == spec.Replicated {
					want = tc.tp
				}
				for i, c := range seen {
					switch {
					case rule.Axis == spec.AxisKVHeads && c >= 1:
					case c != want:
						t.Fatalf("%s: element (%d,%d) loaded %d times, want %d", rule.Pattern, i/cols, i%cols, c, want)
					}
				}
				if rule.Axis != spec.AxisKVHeads && elems != int64(len(seen)*want) {
					t.Errorf("%s: %d elements loaded, want %d", rule.Pattern, elems, len(seen)*want)
				}
			}
		})
	}
}

func TestSliceRanges(t *testing.T) {
	get := func(s *spec.Spec, tp, rank int, name string) Slice {
		t.Helper()
		p, err := New(s, equalWorkers(tp, 0), WithShape(1, tp))
		if err != nil {
			t.Fatal(err)
		}
		rules, _ := Rules(s.Arch)
		r, _, ok := spec.Lookup(rules, name)
		if !ok {
			t.Fatalf("no rule for %s", name)
		}
		return p.Stages[0].Ranks[rank].Slice(r, s)
	}
	cases := []struct {
		name  string
		got   Slice
		rows  [][2]int
		cols  [2]int
		shape []int
	}{
		// bloom 12 heads × 8 over 5: rank 2 holds heads [6,8).
		{"bloom fused qkv per head", get(bloomSpec(12, 2), 5, 2, "transformer.h.1.self_attention.query_key_value.weight"),
			[][2]int{{6 * 24, 8 * 24}}, [2]int{0, 96}, []int{288, 96}},
		{"bloom fused qkv bias", get(bloomSpec(12, 2), 5, 2, "transformer.h.1.self_attention.query_key_value.bias"),
			[][2]int{{144, 192}}, [2]int{0, 1}, []int{288}},
		{"bloom dense row parallel", get(bloomSpec(12, 2), 5, 2, "transformer.h.0.self_attention.dense.weight"),
			[][2]int{{0, 96}}, [2]int{48, 64}, []int{96, 96}},
		{"bloom dense bias on rank 0", get(bloomSpec(12, 2), 5, 0, "transformer.h.0.self_attention.dense.bias"),
			[][2]int{{0, 96}}, [2]int{0, 1}, []int{96}},
		{"bloom dense bias skipped on rank 2", get(bloomSpec(12, 2), 5, 2, "transformer.h.0.self_attention.dense.bias"),
			nil, [2]int{0, 1}, []int{96}},
		{"bloom embeddings vocab parallel", get(bloomSpec(12, 2), 5, 4, "transformer.word_embeddings.weight"),
			[][2]int{{410, 512}}, [2]int{0, 96}, []int{512, 96}},
		{"bloom norm replicated", get(bloomSpec(12, 2), 5, 3, "transformer.h.1.input_layernorm.bias"),
			[][2]int{{0, 96}}, [2]int{0, 1}, []int{96}},
		// llama 8 heads, 2 kv over 3: rank 1 holds heads [3,6), kv [0,2).
		{"llama q", get(llamaSpec(8, 2, 2), 3, 1, "model.layers.0.self_attn.q_proj.weight"),
			[][2]int{{24, 48}}, [2]int{0, 64}, []int{64, 64}},
		{"llama k", get(llamaSpec(8, 2, 2), 3, 1, "model.layers.0.self_attn.k_proj.weight"),
			[][2]int{{0, 16}}, [2]int{0, 64}, []int{16, 64}},
		{"llama v rank 2", get(llamaSpec(8, 2, 2), 3, 2, "model.layers.0.self_attn.v_proj.weight"),
			[][2]int{{8, 16}}, [2]int{0, 64}, []int{16, 64}},
		{"llama down", get(llamaSpec(8, 2, 2), 3, 1, "model.layers.1.mlp.down_proj.weight"),
			[][2]int{{0, 64}}, [2]int{54, 107}, []int{64, 160}},
		{"llama lm head", get(llamaSpec(8, 2, 2), 3, 0, "lm_head.weight"),
			[][2]int{{0, 258}}, [2]int{0, 64}, []int{774, 64}},
		// chatglm GLU: dense_h_to_4h stacks two halves of 160.
		{"chatglm glu halves", get(chatglmSpec(true), 3, 1, "transformer.layers.2.mlp.dense_h_to_4h.weight"),
			[][2]int{{54, 107}, {214, 267}}, [2]int{0, 64}, []int{320, 64}},
		{"chatglm plain h_to_4h", get(chatglmSpec(false), 3, 1, "transformer.layers.2.mlp.dense_h_to_4h.bias"),
			[][2]int{{54, 107}}, [2]int{0, 1}, []int{160}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Equal(tc.got.Rows, tc.rows) || tc.got.Cols != tc.cols || !slices.Equal(tc.got.Shape, tc.shape) {
				t.Errorf("got rows %v cols %v shape %v, want %v %v %v", tc.got.Rows, tc.got.Cols, tc.got.Shape, tc.rows, tc.cols, tc.shape)
			}
		})
	}
}

func TestRulesErrors(t *testing.T) {
	for _, arch := range []string{"bert", "marian"} {
		if _, err := Rules(arch); !errors.Is(err, ErrNotShardable) {
			t.Errorf("Rules(%s) = %v, want ErrNotShardable", arch, err)
		}
	}
	if _, err := Rules("gpt9"); !errors.Is(err, ErrUnknownArch) {
		t.Errorf("Rules(gpt9) = %v", err)
	}
}

func TestNeeds(t *testing.T) {
	cases := []struct {
		name string
		s    *spec.Spec
		// tensors each of three stages loads, besides layer tensors
		want [3][]string
	}{
		{"bloom tied", bloomSpec(12, 3), [3][]string{
			{"transformer.word_embeddings.weight", "transformer.word_embeddings_layernorm.bias", "transformer.word_embeddings_layernorm.weight"},
			nil,
			{"transformer.ln_f.bias", "transformer.ln_f.weight", "transformer.word_embeddings.weight"}}},
		{"llama untied", llamaSpec(8, 2, 3), [3][]string{
			{"model.embed_tokens.weight"}, nil, {"lm_head.weight", "model.norm.weight"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.s, equalWorkers(3, 0))
			if err != nil {
				t.Fatal(err)
			}
			rules, _ := Rules(tc.s.Arch)
			for i := range 3 {
				var got []string
				for _, r := range rules {
					if r.Place == spec.EveryLayer {
						if p.Needs(i, r, i) != true || p.Needs(i, r, (i+1)%3) {
							t.Errorf("stage %d layer needs wrong for %s", i, r.Pattern)
						}
						continue
					}
					if p.Needs(i, r, -1) {
						got = append(got, r.Pattern)
					}
				}
				sort.Strings(got)
				if !slices.Equal(got, tc.want[i]) {
					t.Errorf("stage %d loads %v, want %v", i, got, tc.want[i])
				}
			}
		})
	}
}
