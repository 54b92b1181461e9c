package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tessera-llm/tessera/shard/spec"
)

// String prints the plan as a table, one row per rank.
func (p *Plan) String() string {
	var b strings.Builder
	d := p.Dims
	pp, tp := p.Shape()
	fmt.Fprintf(&b, "plan v%d %s: %d layers, %d heads (%d kv) × %d, mlp %d, vocab %d; pp=%d tp=%d, %d-byte weights\n",
		p.Version, p.Model, d.Layers, d.Heads, d.KVHeads, d.HeadDim, d.Intermediate, d.Vocab, pp, tp, p.DTypeBytes)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tlayers\trank\tworker\theads\tkv\tmlp\tvocab\tweights")
	for _, st := range p.Stages {
		for _, r := range st.Ranks {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Index, rng(st.Layers), r.Index, r.Worker,
				rng(r.Heads), rng(r.KVHeads), rng(r.MLP), rng(r.Vocab), bytesString(r.WeightBytes))
		}
	}
	tw.Flush()
	return b.String()
}

func rng(r [2]int) string { return fmt.Sprintf("[%d,%d)", r[0], r[1]) }

// Hash is a stable content hash of the plan: the hex sha256 of its JSON
// with Version zeroed, so re-issuing the same placement under a new version
// keeps its hash.
func (p *Plan) Hash() string {
	c := *p
	c.Version = 0
	raw, err := json.Marshal(&c)
	if err != nil {
		panic("plan: marshal: " + err.Error()) // plain data: cannot fail
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Parse decodes a plan from JSON and validates it.
func Parse(raw []byte) (*Plan, error) {
	var p Plan
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("plan: decoding JSON: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks that the plan covers the model exactly: the stages cover
// the layers once, in order; within each stage the ranks cover the heads,
// MLP columns and vocabulary once, in order; each rank's kv range holds the
// kv heads its query heads need and its KVMap points at them; ALiBi slopes
// are the global slopes' slice; workers appear once.
func (p *Plan) Validate() error {
	d := p.Dims
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrImpossible, fmt.Sprintf(format, args...))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"layers", d.Layers}, {"hidden", d.Hidden}, {"heads", d.Heads}, {"kv heads", d.KVHeads},
		{"head dim", d.HeadDim}, {"intermediate", d.Intermediate}, {"vocab", d.Vocab}, {"dtype bytes", p.DTypeBytes}} {
		if f.v <= 0 {
			return bad("%s %d must be positive", f.name, f.v)
		}
	}
	if d.Heads%d.KVHeads != 0 {
		return bad("%d heads are not a multiple of %d kv heads", d.Heads, d.KVHeads)
	}
	if len(p.Stages) == 0 {
		return bad("no stages")
	}
	group := d.Heads / d.KVHeads
	var slopes []float32
	if d.ALiBi {
		slopes = spec.ALiBiSlopes(d.Heads)
	}
	workers := map[string]string{}
	layer := 0
	for i, st := range p.Stages {
		where := fmt.Sprintf("stage %d", i)
		if st.Index != i {
			return bad("%s has index %d", where, st.Index)
		}
		if err := tile(&layer, st.Layers, d.Layers); err != nil {
			return bad("%s layers: %v", where, err)
		}
		if len(st.Ranks) == 0 {
			return bad("%s has no ranks", where)
		}
		var head, mlp, vocab int
		for j, r := range st.Ranks {
			where := fmt.Sprintf("stage %d rank %d", i, j)
			switch {
			case r.Index != j:
				return bad("%s has index %d", where, r.Index)
			case r.Worker == "":
				return bad("%s has no worker", where)
			case workers[r.Worker] != "":
				return bad("worker %q holds both %s and %s", r.Worker, workers[r.Worker], where)
			}
			workers[r.Worker] = where
			if err := tile(&head, r.Heads, d.Heads); err != nil {
				return bad("%s heads: %v", where, err)
			}
			if err := tile(&mlp, r.MLP, d.Intermediate); err != nil {
				return bad("%s mlp columns: %v", where, err)
			}
			if err := tile(&vocab, r.Vocab, d.Vocab); err != nil {
				return bad("%s vocab: %v", where, err)
			}
			need, _ := kvFor(r.Heads, group)
			if r.KVHeads[0] < 0 || r.KVHeads[1] > d.KVHeads || r.KVHeads[0] > need[0] || r.KVHeads[1] < need[1] {
				return bad("%s kv heads %s do not hold the %s its heads %s need (of %d)",
					where, rng(r.KVHeads), rng(need), rng(r.Heads), d.KVHeads)
			}
			if len(r.KVMap) != r.Heads[1]-r.Heads[0] {
				return bad("%s kv map has %d entries for %d heads", where, len(r.KVMap), r.Heads[1]-r.Heads[0])
			}
			for h, kv := range r.KVMap {
				if want := (r.Heads[0]+h)/group - r.KVHeads[0]; int(kv) != want {
					return bad("%s kv map[%d] = %d, want %d", where, h, kv, want)
				}
			}
			switch {
			case slopes == nil && r.ALiBiSlopes != nil:
				return bad("%s has ALiBi slopes for a model without ALiBi", where)
			case slopes != nil && !slices.Equal(r.ALiBiSlopes, slopes[r.Heads[0]:r.Heads[1]]):
				return bad("%s ALiBi slopes are not the global slopes[%d:%d]", where, r.Heads[0], r.Heads[1])
			}
		}
		for _, c := range []struct {
			name     string
			got, all int
		}{{"heads", head, d.Heads}, {"mlp columns", mlp, d.Intermediate}, {"vocab", vocab, d.Vocab}} {
			if c.got != c.all {
				return bad("%s ranks cover %s [0,%d) of %d", where, c.name, c.got, c.all)
			}
		}
	}
	if layer != d.Layers {
		return bad("stages cover layers [0,%d) of %d", layer, d.Layers)
	}
	return nil
}

// tile checks that r continues a tiling of [0,n) at *next and is not empty.
func tile(next *int, r [2]int, n int) error {
	switch {
	case r[0] != *next:
		return fmt.Errorf("%s starts at %d, not where the previous ended (%d)", rng(r), r[0], *next)
	case r[1] <= r[0]:
		return fmt.Errorf("%s is empty", rng(r))
	case r[1] > n:
		return fmt.Errorf("%s runs past %d", rng(r), n)
	}
	*next = r[1]
	return nil
}

// Matches checks that the plan was made for this model.
func (p *Plan) Matches(s *spec.Spec) error {
	if s.Arch != p.Model || dimsOf(s) != p.Dims {
		return fmt.Errorf("%w: plan for %s %+v does not match model %s %+v", ErrImpossible, p.Model, p.Dims, s.Arch, dimsOf(s))
	}
	return nil
}
