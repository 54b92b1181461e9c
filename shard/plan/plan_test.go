package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/shard/spec"
)

const GiB = 1 << 30

func bloomSpec(heads, layers int) *spec.Spec {
	return &spec.Spec{Arch: "bloom", Hidden: 8 * heads, Layers: layers, Heads: heads, KVHeads: heads, HeadDim: 8,
		Intermediate: 32 * heads, Vocab: 512, Positions: spec.ALiBi, NormEps: 1e-5, TiedEmbeddings: true}
}

func llamaSpec(heads, kv, layers int) *spec.Spec {
	return &spec.Spec{Arch: "llama", Hidden: 8 * heads, Layers: layers, Heads: heads, KVHeads: kv, HeadDim: 8,
		Intermediate: 160, Vocab: 774, Positions: spec.RoPE, NormEps: 1e-6, Gated: true}
}

func equalWorkers(n int, mem int64) []Worker {
	ws := make([]Worker, n)
	for i := range ws {
		ws[i] = Worker{ID: fmt.Sprintf("w%d", i), Memory: mem}
	}
	return ws
}

func workersWith(mems ...int64) []Worker {
	ws := make([]Worker, len(mems))
	for i, m := range mems {
		ws[i] = Worker{ID: fmt.Sprintf("w%d", i), Memory: m}
	}
	return ws
}

func counts(rs [][2]int) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r[1] - r[0]
	}
	return out
}

func stageField(st Stage, f func(Rank) [2]int) []int {
	var out []int
	for _, r := range st.Ranks {
		out = append(out, f(r)[1]-f(r)[0])
	}
	return out
}

func heads(r Rank) [2]int { return r.Heads }
func mlp(r Rank) [2]int   { return r.MLP }
func vocab(r Rank) [2]int { return r.Vocab }

func TestApportion(t *testing.T) {
	cases := []struct {
		name string
		n    int
		w    []int64
		want []int
	}{
		{"12 over 5 equal", 12, []int64{1, 1, 1, 1, 1}, []int{3, 3, 2, 2, 2}},
		{"8 8 16", 12, []int64{8, 8, 16}, []int{3, 3, 6}},
		{"one", 7, []int64{5}, []int{7}},
		{"exact", 6, []int64{1, 2, 3}, []int{1, 2, 3}},
		{"floor of one overshoots", 102, []int64{1, 1, 100}, []int{1, 1, 100}},
		{"every holder gets one", 3, []int64{1, 1, 100}, []int{1, 1, 1}},
		{"small takes one", 5, []int64{1, 1000}, []int{1, 4}},
		{"take back from the furthest over quota", 4, []int64{1, 1, 50, 48}, []int{1, 1, 1, 1}},
		{"huge memories", 250880, []int64{141 * GiB, 80 * GiB, 80 * GiB}, []int{117522, 66679, 66679}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := apportion(tc.n, tc.w); !slices.Equal(got, tc.want) {
				t.Errorf("apportion(%d, %v) = %v, want %v", tc.n, tc.w, got, tc.want)
			}
		})
	}
}

func TestNewShapes(t *testing.T) {
	cases := []struct {
		name    string
		spec    *spec.Spec
		workers []Worker
		opts    []Option
		layers  []int   // layers per stage
		heads   [][]int // heads per rank, per stage
		mlp     [][]int // when set
	}{
		{"12 heads over 5 equal ranks", bloomSpec(12, 3), equalWorkers(5, 0), []Option{WithShape(1, 5)},
			[]int{3}, [][]int{{3, 3, 2, 2, 2}}, [][]int{{77, 77, 77, 77, 76}}},
		{"memory proportional 8 8 16 GiB ranks", bloomSpec(12, 3), workersWith(8*GiB, 8*GiB, 16*GiB), []Option{WithShape(1, 3)},
			[]int{3}, [][]int{{3, 3, 6}}, [][]int{{96, 96, 192}}},
		{"memory proportional 8 8 16 GiB stages", bloomSpec(12, 12), workersWith(8*GiB, 8*GiB, 16*GiB), nil,
			[]int{3, 3, 6}, [][]int{{12}, {12}, {12}}, nil},
		{"pp=3 tp=1", bloomSpec(12, 3), equalWorkers(3, GiB), []Option{WithShape(3, 1)},
			[]int{1, 1, 1}, [][]int{{12}, {12}, {12}}, nil},
		{"pp=1 tp=3", bloomSpec(12, 3), equalWorkers(3, GiB), []Option{WithShape(1, 3)},
			[]int{3}, [][]int{{4, 4, 4}}, nil},
		{"pp=2 tp=2", bloomSpec(12, 3), equalWorkers(4, GiB), []Option{WithShape(2, 2)},
			[]int{2, 1}, [][]int{{6, 6}, {6, 6}}, nil},
		{"default is pipeline only", bloomSpec(12, 3), equalWorkers(3, 0), nil,
			[]int{1, 1, 1}, [][]int{{12}, {12}, {12}}, nil},
		{"default with more workers than layers", bloomSpec(12, 3), equalWorkers(4, 0), nil,
			[]int{2, 1}, [][]int{{6, 6}, {6, 6}}, nil},
		{"default with a prime worker count", bloomSpec(12, 3), equalWorkers(5, 0), nil,
			[]int{3}, [][]int{{3, 3, 2, 2, 2}}, nil},
		{"stage memory decides layers, not rank count", bloomSpec(12, 4), workersWith(GiB, GiB, 6*GiB, 2*GiB), []Option{WithShape(2, 2)},
			[]int{1, 3}, [][]int{{6, 6}, {9, 3}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.spec, tc.workers, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var layers []int
			for i, st := range p.Stages {
				layers = append(layers, st.Layers[1]-st.Layers[0])
				if got := stageField(st, heads); !slices.Equal(got, tc.heads[i]) {
					t.Errorf("stage %d heads %v, want %v", i, got, tc.heads[i])
				}
				if tc.mlp != nil {
					if got := stageField(st, mlp); !slices.Equal(got, tc.mlp[i]) {
						t.Errorf("stage %d mlp %v, want %v", i, got, tc.mlp[i])
					}
				}
			}
			if !slices.Equal(layers, tc.layers) {
				t.Errorf("layers %v, want %v", layers, tc.layers)
			}
			if t.Failed() {
				t.Log("\n" + p.String())
			}
		})
	}
}

func TestGQA(t *testing.T) {
	cases := []struct {
		name  string
		ranks int
		heads [][2]int
		kv    [][2]int
		maps  [][]int32
	}{
		{"8 heads 2 kv over 4 ranks: kv replicated", 4,
			[][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 8}},
			[][2]int{{0, 1}, {0, 1}, {1, 2}, {1, 2}},
			[][]int32{{0, 0}, {0, 0}, {0, 0}, {0, 0}}},
		{"8 heads 2 kv over 3 ranks: uneven", 3,
			[][2]int{{0, 3}, {3, 6}, {6, 8}},
			[][2]int{{0, 1}, {0, 2}, {1, 2}},
			[][]int32{{0, 0, 0}, {0, 1, 1}, {0, 0}}},
		{"8 heads 2 kv over 2 ranks: one each", 2,
			[][2]int{{0, 4}, {4, 8}},
			[][2]int{{0, 1}, {1, 2}},
			[][]int32{{0, 0, 0, 0}, {0, 0, 0, 0}}},
		{"8 heads 2 kv over 1 rank", 1,
			[][2]int{{0, 8}}, [][2]int{{0, 2}}, [][]int32{{0, 0, 0, 0, 1, 1, 1, 1}}},
		{"8 heads 2 kv over 8 ranks", 8,
			[][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}},
			[][2]int{{0, 1}, {0, 1}, {0, 1}, {0, 1}, {1, 2}, {1, 2}, {1, 2}, {1, 2}},
			[][]int32{{0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(llamaSpec(8, 2, 3), equalWorkers(tc.ranks, GiB), WithShape(1, tc.ranks))
			if err != nil {
				t.Fatal(err)
			}
			for j, r := range p.Stages[0].Ranks {
				if r.Heads != tc.heads[j] || r.KVHeads != tc.kv[j] || !slices.Equal(r.KVMap, tc.maps[j]) {
					t.Errorf("rank %d: heads %v kv %v map %v, want %v %v %v", j, r.Heads, r.KVHeads, r.KVMap,
						tc.heads[j], tc.kv[j], tc.maps[j])
				}
				if r.ALiBiSlopes != nil {
					t.Errorf("rank %d has ALiBi slopes on a RoPE model", j)
				}
			}
		})
	}
}

func TestALiBiSlices(t *testing.T) {
	for _, tc := range []struct {
		name         string
		heads, ranks int
	}{{"12 over 5", 12, 5}, {"12 over 3", 12, 3}, {"6 over 4", 6, 4}, {"16 over 3", 16, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(bloomSpec(tc.heads, 2), equalWorkers(tc.ranks, 0), WithShape(1, tc.ranks))
			if err != nil {
				t.Fatal(err)
			}
			global := spec.ALiBiSlopes(tc.heads)
			differs := false
			for j, r := range p.Stages[0].Ranks {
				a, b := r.Heads[0], r.Heads[1]
				if !slices.Equal(r.ALiBiSlopes, global[a:b]) {
					t.Errorf("rank %d slopes %v, want global[%d:%d] = %v", j, r.ALiBiSlopes, a, b, global[a:b])
				}
				if !slices.Equal(r.ALiBiSlopes, spec.ALiBiSlopes(b-a)) {
					differs = true
				}
			}
			if !differs {
				t.Errorf("every rank's slopes equal ALiBiSlopes(local count): the test proves nothing")
			}
		})
	}
}

// mutations returns a copy of p for each leaf value reachable in it, with
// that one value changed.
func mutations(t *testing.T, p *Plan) map[string]*Plan {
	out := map[string]*Plan{}
	var n int
	var walk func(path string, get func(*Plan) reflect.Value)
	walk = func(path string, get func(*Plan) reflect.Value) {
		v := get(p)
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(path+"."+v.Type().Field(i).Name, func(q *Plan) reflect.Value { return get(q).Field(i) })
			}
			return
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(fmt.Sprintf("%s[%d]", path, i), func(q *Plan) reflect.Value { return get(q).Index(i) })
			}
			return
		}
		c := clonePlan(t, p)
		f := get(c)
		switch f.Kind() {
		case reflect.Int, reflect.Int32, reflect.Int64:
			f.SetInt(f.Int() + 1)
		case reflect.Uint64:
			f.SetUint(f.Uint() + 1)
		case reflect.Float32:
			f.SetFloat(f.Float() * 1.5)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.String:
			f.SetString(f.String() + "x")
		default:
			t.Fatalf("%s: unhandled kind %s", path, f.Kind())
		}
		out[path] = c
		n++
	}
	walk("Plan", func(q *Plan) reflect.Value { return reflect.ValueOf(q).Elem() })
	return out
}

func clonePlan(t *testing.T, p *Plan) *Plan {
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var c Plan
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestHash(t *testing.T) {
	s := bloomSpec(12, 3)
	ws := workersWith(GiB, GiB, 2*GiB, 2*GiB)
	p1, err := New(s, ws, WithShape(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := New(s, ws, WithShape(2, 2))
	if p1.Hash() != p2.Hash() {
		t.Fatal("the same plan hashes differently")
	}
	if h := p1.Hash(); len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("hash %q is not hex sha256", h)
	}
	p3, _ := New(s, ws, WithShape(2, 2), WithVersion(7))
	if p3.Version != 7 || p3.Hash() != p1.Hash() {
		t.Errorf("version %d changed the hash", p3.Version)
	}
	muts := mutations(t, p1)
	if len(muts) < 50 {
		t.Fatalf("only %d mutations: the walk missed fields", len(muts))
	}
	for path, m := range muts {
		same := m.Hash() == p1.Hash()
		if path == "Plan.Version" {
			if !same {
				t.Errorf("changing %s changed the hash", path)
			}
			continue
		}
		if same {
			t.Errorf("changing %s left the hash unchanged", path)
		}
	}
	// Other placements differ too.
	p4, _ := New(s, ws, WithShape(1, 4))
	p5, _ := New(s, ws, WithShape(2, 2), WithDTypeBytes(4))
	if p4.Hash() == p1.Hash() || p5.Hash() == p1.Hash() {
		t.Error("a different shape or dtype hashes the same")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *spec.Spec
		pp   int
		tp   int
	}{{"bloom alibi", bloomSpec(12, 3), 1, 5}, {"llama gqa", llamaSpec(8, 2, 3), 3, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.s, equalWorkers(tc.pp*tc.tp, GiB), WithShape(tc.pp, tc.tp), WithVersion(42))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			q, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, q) {
				t.Errorf("round trip changed the plan:\n%+v\n%+v", p, q)
			}
			if p.Hash() != q.Hash() || p.String() != q.String() || q.Version != 42 {
				t.Error("round trip changed the hash, the table or the version")
			}
			if err := q.Matches(tc.s); err != nil {
				t.Error(err)
			}
			if err := q.Matches(bloomSpec(4, 1)); err == nil {
				t.Error("a plan matches another model")
			}
		})
	}
	if _, err := Parse([]byte(`{"version":1}`)); err == nil {
		t.Error("Parse accepted an empty plan")
	}
	if _, err := Parse([]byte(`[`)); err == nil {
		t.Error("Parse accepted bad JSON")
	}
}

func TestNewErrors(t *testing.T) {
	bloom := bloomSpec(12, 3)
	bert := &spec.Spec{Arch: "bert", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 16, Intermediate: 128, Vocab: 800, NormEps: 1e-12}
	unknown := *bloom
	unknown.Arch = "gpt9"
	cases := []struct {
		name    string
		s       *spec.Spec
		workers []Worker
		opts    []Option
		is      error
		msg     []string
	}{
		{"more ranks than heads", bloom, equalWorkers(13, 0), []Option{WithShape(1, 13)}, ErrImpossible,
			[]string{"13 tensor-parallel ranks for 12 heads"}},
		{"zero workers", bloom, nil, nil, ErrImpossible, []string{"no workers"}},
		{"pp > layers", bloom, equalWorkers(4, 0), []Option{WithShape(4, 1)}, ErrImpossible,
			[]string{"4 pipeline stages for 3 layers"}},
		{"shape does not match workers", bloom, equalWorkers(4, 0), []Option{WithShape(2, 3)}, ErrImpossible,
			[]string{"needs 6 workers, have 4"}},
		{"not enough memory", bloom, workersWith(GiB, 300<<10, GiB), []Option{WithShape(3, 1), WithDTypeBytes(4)}, ErrMemory,
			[]string{`worker "w1"`, "stage 1", "layers [1,2)", "has 300.0 KiB", "(307200 bytes)"}},
		{"reserve leaves too little", bloom, workersWith(300<<10, 300<<10), []Option{WithShape(1, 2), WithReserve(0.5)}, ErrMemory,
			[]string{`worker "w0"`, "has 150.0 KiB (153600 bytes) usable of 300.0 KiB"}},
		{"unknown architecture", &unknown, equalWorkers(1, 0), nil, ErrUnknownArch, []string{`"gpt9"`}},
		{"bert is not shardable", bert, equalWorkers(2, 0), nil, ErrNotShardable, []string{"bert"}},
		{"duplicate worker", bloom, []Worker{{ID: "a"}, {ID: "a"}}, nil, ErrImpossible, []string{`"a" listed twice`}},
		{"some memory unknown", bloom, workersWith(GiB, 0), nil, ErrImpossible, []string{`"w1" advertises no memory`}},
		{"bad dtype", bloom, equalWorkers(1, 0), []Option{WithDTypeBytes(0)}, ErrImpossible, []string{"dtype"}},
		{"invalid spec", &spec.Spec{Arch: "bloom"}, equalWorkers(1, 0), nil, ErrImpossible, []string{"must be positive"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.s, tc.workers, tc.opts...)
			if err == nil {
				t.Fatalf("no error; plan:\n%s", p)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %q", err, tc.is)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	// A single-worker plan of a not-yet-shardable architecture is fine.
	if _, err := New(bert, equalWorkers(1, 0)); err != nil {
		t.Errorf("bert on one worker: %v", err)
	}
}

func TestValidateCatches(t *testing.T) {
	base, err := New(llamaSpec(8, 2, 4), equalWorkers(4, 0), WithShape(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	alibi, err := New(bloomSpec(12, 3), equalWorkers(2, 0), WithShape(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		from   *Plan
		mutate func(p *Plan)
		msg    string
	}{
		{"layer gap", base, func(p *Plan) { p.Stages[1].Layers[0]++ }, "layers"},
		{"layer short", base, func(p *Plan) { p.Stages[1].Layers[1]-- }, "cover layers"},
		{"head overlap", base, func(p *Plan) { p.Stages[0].Ranks[1].Heads[0]-- }, "heads"},
		{"heads short", base, func(p *Plan) { p.Stages[0].Ranks[1].Heads[1]-- }, "heads"},
		{"mlp gap", base, func(p *Plan) { p.Stages[1].Ranks[0].MLP[1]-- }, "mlp"},
		{"vocab past end", base, func(p *Plan) { p.Stages[1].Ranks[1].Vocab[1]++ }, "vocab"},
		{"kv missing", base, func(p *Plan) { p.Stages[0].Ranks[0].KVHeads[1] = 0 }, "kv heads"},
		{"kv map wrong", base, func(p *Plan) { p.Stages[0].Ranks[0].KVMap[0] = 1 }, "kv map"},
		{"kv map short", base, func(p *Plan) { p.Stages[0].Ranks[0].KVMap = p.Stages[0].Ranks[0].KVMap[1:] }, "kv map"},
		{"duplicate worker", base, func(p *Plan) { p.Stages[1].Ranks[0].Worker = "w0" }, `"w0"`},
		{"no ranks", base, func(p *Plan) { p.Stages[1].Ranks = nil }, "no ranks"},
		{"stage index", base, func(p *Plan) { p.Stages[1].Index = 5 }, "index"},
		{"slopes from the local count", alibi, func(p *Plan) {
			r := &p.Stages[0].Ranks[1]
			r.ALiBiSlopes = spec.ALiBiSlopes(r.Heads[1] - r.Heads[0])
		}, "ALiBi"},
		{"slopes on a rope model", base, func(p *Plan) { p.Stages[0].Ranks[0].ALiBiSlopes = []float32{1} }, "ALiBi"},
		{"no stages", base, func(p *Plan) { p.Stages = nil }, "no stages"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := clonePlan(t, tc.from)
			if err := p.Validate(); err != nil {
				t.Fatalf("clean plan invalid: %v", err)
			}
			tc.mutate(p)
			err := p.Validate()
			if err == nil {
				t.Fatalf("Validate accepted a broken plan:\n%s", p)
			}
			if !errors.Is(err, ErrImpossible) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q: want ErrImpossible mentioning %q", err, tc.msg)
			}
		})
	}
}

// TestRandomPlans is a property test: over many random models and worker
// sets, a plan either is refused for a stated reason or covers everything
// exactly, with counts within one of their memory-proportional quota.
func TestRandomPlans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	made := 0
	for iter := range 2000 {
		kv := 1 + rng.IntN(8)
		heads := kv * (1 + rng.IntN(6))
		layers := 1 + rng.IntN(10)
		pp, tp := 1+rng.IntN(6), 1+rng.IntN(10)
		s := llamaSpec(heads, kv, layers)
		s.Intermediate = 1 + rng.IntN(300)
		s.Vocab = 1 + rng.IntN(1000)
		if rng.IntN(2) == 0 {
			s.Arch, s.Positions, s.Gated = "bloom", spec.ALiBi, false
			s.KVHeads = heads
		}
		ws := make([]Worker, pp*tp)
		for i := range ws {
			ws[i] = Worker{ID: fmt.Sprintf("w%d", i), Memory: (1 + rng.Int64N(64)) * GiB}
		}
		name := fmt.Sprintf("#%d %s heads=%d kv=%d layers=%d mlp=%d vocab=%d pp=%d tp=%d",
			iter, s.Arch, s.Heads, s.KVHeads, layers, s.Intermediate, s.Vocab, pp, tp)
		p, err := New(s, ws, WithShape(pp, tp))
		possible := pp <= layers && tp <= heads && tp <= s.Intermediate && tp <= s.Vocab
		if !possible {
			if !errors.Is(err, ErrImpossible) {
				t.Fatalf("%s: want ErrImpossible, got %v", name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		made++
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkCoverage(t, name, p, s, ws)
	}
	if made < 500 {
		t.Errorf("only %d possible plans in the sample", made)
	}
}

func checkCoverage(t *testing.T, name string, p *Plan, s *spec.Spec, ws []Worker) {
	t.Helper()
	mem := map[string]int64{}
	for _, w := range ws {
		mem[w.ID] = w.Memory
	}
	layerSeen := make([]int, s.Layers)
	var stageMem []int64
	var total int64
	for _, st := range p.Stages {
		for l := st.Layers[0]; l < st.Layers[1]; l++ {
			layerSeen[l]++
		}
		var m int64
		for _, r := range st.Ranks {
			m += mem[r.Worker]
		}
		stageMem = append(stageMem, m)
		total += m
		cover := func(what string, n int, f func(Rank) [2]int) {
			seen := make([]int, n)
			var rm []int64
			for _, r := range st.Ranks {
				for i := f(r)[0]; i < f(r)[1]; i++ {
					seen[i]++
				}
				rm = append(rm, mem[r.Worker])
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("%s: stage %d %s %d covered %d times", name, st.Index, what, i, c)
				}
			}
			checkQuota(t, fmt.Sprintf("%s: stage %d %s", name, st.Index, what), n, rm, stageField(st, f))
		}
		cover("head", s.Heads, heads)
		cover("mlp column", s.Intermediate, mlp)
		cover("vocab row", s.Vocab, vocab)
		kvSeen := make([]bool, s.KVHeads)
		group := s.Heads / s.KVHeads
		for _, r := range st.Ranks {
			for h := r.Heads[0]; h < r.Heads[1]; h++ {
				kv := r.KVHeads[0] + int(r.KVMap[h-r.Heads[0]])
				if kv != h/group || kv >= r.KVHeads[1] {
					t.Fatalf("%s: head %d reads kv %d", name, h, kv)
				}
				kvSeen[kv] = true
			}
		}
		if slices.Contains(kvSeen, false) {
			t.Fatalf("%s: stage %d leaves a kv head unused", name, st.Index)
		}
	}
	for l, c := range layerSeen {
		if c != 1 {
			t.Fatalf("%s: layer %d covered %d times", name, l, c)
		}
	}
	var layers []int
	for _, st := range p.Stages {
		layers = append(layers, st.Layers[1]-st.Layers[0])
	}
	checkQuota(t, name+": layers", s.Layers, stageMem, layers)
}

// checkQuota: when every holder's quota is at least one, largest remainder
// keeps each count within one of it.
func checkQuota(t *testing.T, name string, n int, w []int64, got []int) {
	t.Helper()
	var W float64
	for _, x := range w {
		W += float64(x)
	}
	for _, x := range w {
		if float64(n)*float64(x)/W < 1 {
			return
		}
	}
	for i, x := range w {
		q := float64(n) * float64(x) / W
		if d := float64(got[i]) - q; d <= -1 || d >= 1 {
			t.Fatalf("%s: holder %d got %d, quota %.3f (%v over %v)", name, i, got[i], q, got, w)
		}
	}
}

func TestFindAndShape(t *testing.T) {
	p, err := New(bloomSpec(12, 3), equalWorkers(6, 0), WithShape(3, 2))
	if err != nil {
		t.Fatal(err)
	}
	if pp, tp := p.Shape(); pp != 3 || tp != 2 {
		t.Errorf("shape %d×%d", pp, tp)
	}
	if st, r, ok := p.Find("w3"); !ok || st != 1 || r != 1 {
		t.Errorf("Find(w3) = %d %d %v", st, r, ok)
	}
	if _, _, ok := p.Find("nope"); ok {
		t.Error("found a worker not in the plan")
	}
	if !p.IsFirst(0) || p.IsFirst(1) || !p.IsLast(2) || p.IsLast(1) {
		t.Error("IsFirst/IsLast wrong")
	}
}
