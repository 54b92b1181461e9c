package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tessera-llm/tessera/shard/spec"
)

// Kind says how a tensor is divided among the tensor-parallel ranks of a
// stage. Weights are Hugging Face Linear weights, shaped [out, in].
type Kind int

const (
	// Replicated tensors (norms) are loaded whole by every rank.
	Replicated Kind = iota
	// ColumnParallel slices output rows by the rule's Axis (heads, kv
	// heads or MLP columns); a bias is sliced the same way.
	ColumnParallel
	// FusedQKVPerHead slices a fused [heads, 3, head_dim] projection by
	// whole (q,k,v) groups: head h is rows [h·3d, (h+1)·3d).
	FusedQKVPerHead
	// RowParallel slices input columns by the rule's Axis; the ranks'
	// outputs are partial sums to all-reduce. Its bias must be added exactly
	// once, so only rank 0 loads it.
	RowParallel
	// VocabParallel slices rows by the rank's vocabulary slice (embeddings
	// and the LM head).
	VocabParallel
)

var kindNames = [...]string{"replicated", "column", "fused_qkv", "row", "vocab"}

func (k Kind) String() string { return enumString(kindNames[:], int(k), "kind") }

// Axis is the model dimension a rule slices by.
type Axis int

const (
	AxisNone    Axis = iota // Replicated
	AxisHeads               // query heads × head_dim
	AxisKVHeads             // kv heads × head_dim
	AxisMLP                 // intermediate (MLP) columns
	AxisVocab               // vocabulary rows
)

var axisNames = [...]string{"none", "heads", "kv_heads", "mlp", "vocab"}

func (a Axis) String() string { return enumString(axisNames[:], int(a), "axis") }

// Place says which stages need a tensor.
type Place int

const (
	// EveryLayer: the pattern holds {layer}; a stage loads its own layers.
	EveryLayer Place = iota
	// FirstStage: only the first stage (e.g. BLOOM's embedding LayerNorm).
	FirstStage
	// LastStage: only the last stage (the final norm).
	LastStage
	// Embeddings: the first stage, and also the last when the embeddings
	// are tied to the LM head.
	Embeddings
	// LMHead: the last stage, when the embeddings are not tied.
	LMHead
)

var placeNames = [...]string{"layer", "first", "last", "embeddings", "lm_head"}

func (p Place) String() string { return enumString(placeNames[:], int(p), "place") }

// Rule maps checkpoint tensor names to how they are sliced.
type Rule struct {
	// Pattern is a tensor name; "{layer}" stands for the layer number.
	Pattern string
	Kind    Kind
	// Axis is what Kind slices by: heads, kv heads or MLP columns for
	// ColumnParallel and RowParallel; AxisHeads for FusedQKVPerHead;
	// AxisVocab for VocabParallel; AxisNone for Replicated.
	Axis Axis
	// Bias marks a 1-D tensor (a bias or a norm vector).
	Bias bool
	// Halves marks an MLP input projection that stacks two halves
	// ([x; gate], 2·intermediate rows) when the spec is gated (ChatGLM's
	// GLU): each rank takes its columns from both halves.
	Halves bool
	Place  Place
}

// ErrUnknownArch is returned for an architecture the planner has never
// heard of; ErrNotShardable for one that loads, but only whole (pp = tp = 1).
var (
	ErrUnknownArch  = errors.New("unknown architecture")
	ErrNotShardable = errors.New("architecture is not yet shardable")
)

// Rules returns the slicing rules of an architecture (a spec's Arch).
func Rules(arch string) ([]Rule, error) {
	switch arch {
	case "bloom":
		return bloomRules, nil
	case "llama":
		return llamaRules, nil
	case "chatglm":
		return chatglmRules, nil
	case "bert", "marian":
		return nil, fmt.Errorf("%w: %s (only a single-worker plan, pp=1 tp=1)", ErrNotShardable, arch)
	}
	return nil, fmt.Errorf("%w: %q (shardable: bloom, chatglm, llama)", ErrUnknownArch, arch)
}

// known reports whether arch is served at all (sharded or not).
func known(arch string) bool {
	_, err := Rules(arch)
	return err == nil || errors.Is(err, ErrNotShardable)
}

// linear is a weight and its bias, sliced alike.
func linear(prefix string, k Kind, a Axis, p Place) []Rule {
	return []Rule{
		{Pattern: prefix + ".weight", Kind: k, Axis: a, Place: p},
		{Pattern: prefix + ".bias", Kind: k, Axis: a, Bias: true, Place: p},
	}
}

func norm(prefix string, p Place, bias bool) []Rule {
	r := []Rule{{Pattern: prefix + ".weight", Kind: Replicated, Bias: true, Place: p}}
	if bias {
		r = append(r, Rule{Pattern: prefix + ".bias", Kind: Replicated, Bias: true, Place: p})
	}
	return r
}

func weight(name string, k Kind, a Axis, p Place) Rule {
	return Rule{Pattern: name, Kind: k, Axis: a, Place: p}
}

func concat(parts ...[]Rule) []Rule {
	var out []Rule
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var bloomRules = concat(
	[]Rule{weight("transformer.word_embeddings.weight", VocabParallel, AxisVocab, Embeddings)},
	norm("transformer.word_embeddings_layernorm", FirstStage, true),
	norm("transformer.h.{layer}.input_layernorm", EveryLayer, true),
	linear("transformer.h.{layer}.self_attention.query_key_value", FusedQKVPerHead, AxisHeads, EveryLayer),
	linear("transformer.h.{layer}.self_attention.dense", RowParallel, AxisHeads, EveryLayer),
	norm("transformer.h.{layer}.post_attention_layernorm", EveryLayer, true),
	linear("transformer.h.{layer}.mlp.dense_h_to_4h", ColumnParallel, AxisMLP, EveryLayer),
	linear("transformer.h.{layer}.mlp.dense_4h_to_h", RowParallel, AxisMLP, EveryLayer),
	norm("transformer.ln_f", LastStage, true),
	[]Rule{weight("lm_head.weight", VocabParallel, AxisVocab, LMHead)},
)

var llamaRules = concat(
	[]Rule{weight("model.embed_tokens.weight", VocabParallel, AxisVocab, Embeddings)},
	norm("model.layers.{layer}.input_layernorm", EveryLayer, false),
	[]Rule{
		weight("model.layers.{layer}.self_attn.q_proj.weight", ColumnParallel, AxisHeads, EveryLayer),
		weight("model.layers.{layer}.self_attn.k_proj.weight", ColumnParallel, AxisKVHeads, EveryLayer),
		weight("model.layers.{layer}.self_attn.v_proj.weight", ColumnParallel, AxisKVHeads, EveryLayer),
		weight("model.layers.{layer}.self_attn.o_proj.weight", RowParallel, AxisHeads, EveryLayer),
	},
	norm("model.layers.{layer}.post_attention_layernorm", EveryLayer, false),
	[]Rule{
		weight("model.layers.{layer}.mlp.gate_proj.weight", ColumnParallel, AxisMLP, EveryLayer),
		weight("model.layers.{layer}.mlp.up_proj.weight", ColumnParallel, AxisMLP, EveryLayer),
		weight("model.layers.{layer}.mlp.down_proj.weight", RowParallel, AxisMLP, EveryLayer),
	},
	norm("model.norm", LastStage, false),
	[]Rule{weight("lm_head.weight", VocabParallel, AxisVocab, LMHead)},
)

var chatglmRules = concat(
	[]Rule{weight("transformer.word_embeddings.weight", VocabParallel, AxisVocab, Embeddings)},
	norm("transformer.layers.{layer}.input_layernorm", EveryLayer, true),
	linear("transformer.layers.{layer}.attention.query_key_value", FusedQKVPerHead, AxisHeads, EveryLayer),
	linear("transformer.layers.{layer}.attention.dense", RowParallel, AxisHeads, EveryLayer),
	norm("transformer.layers.{layer}.post_attention_layernorm", EveryLayer, true),
	halves(linear("transformer.layers.{layer}.mlp.dense_h_to_4h", ColumnParallel, AxisMLP, EveryLayer)),
	linear("transformer.layers.{layer}.mlp.dense_4h_to_h", RowParallel, AxisMLP, EveryLayer),
	norm("transformer.final_layernorm", LastStage, true),
	[]Rule{weight("lm_head.weight", VocabParallel, AxisVocab, LMHead)},
)

func halves(rs []Rule) []Rule {
	for i := range rs {
		rs[i].Halves = true
	}
	return rs
}

const layerVar = "{layer}"

// Match reports whether name is an instance of the rule's pattern, and the
// layer number it names (-1 for a pattern without {layer}).
func (r Rule) Match(name string) (layer int, ok bool) {
	pre, post, has := strings.Cut(r.Pattern, layerVar)
	if !has {
		return -1, name == r.Pattern
	}
	if len(name) <= len(pre)+len(post) || !strings.HasPrefix(name, pre) || !strings.HasSuffix(name, post) {
		return 0, false
	}
	digits := name[len(pre) : len(name)-len(post)]
	if len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	return n, true
}

// Name is the tensor name of the rule for a layer (ignored by patterns
// without {layer}).
func (r Rule) Name(layer int) string {
	return strings.Replace(r.Pattern, layerVar, strconv.Itoa(layer), 1)
}

// Lookup finds the rule for a tensor name and the layer it names (-1 for
// none).
func Lookup(rules []Rule, name string) (Rule, int, bool) {
	for _, r := range rules {
		if l, ok := r.Match(name); ok {
			return r, l, true
		}
	}
	return Rule{}, 0, false
}

// Shape is the full (unsharded) shape of the tensor a rule names, derived
// from the spec: [rows] for a 1-D tensor, [rows, cols] for a weight.
func (r Rule) Shape(s *spec.Spec) []int {
	return r.shape(dimsOf(s))
}

func (r Rule) shape(d Dims) []int {
	var n int // the size of the axis
	switch r.Axis {
	case AxisHeads:
		n = d.Heads * d.HeadDim
	case AxisKVHeads:
		n = d.KVHeads * d.HeadDim
	case AxisMLP:
		n = d.Intermediate
	case AxisVocab:
		n = d.Vocab
	}
	if r.Kind == FusedQKVPerHead {
		n *= 3
	}
	if r.Halves && d.Gated {
		n *= 2
	}
	switch {
	case r.Kind == Replicated:
		return []int{d.Hidden}
	case r.Kind == RowParallel && r.Bias:
		return []int{d.Hidden}
	case r.Kind == RowParallel:
		return []int{d.Hidden, n}
	case r.Bias:
		return []int{n}
	}
	return []int{n, d.Hidden}
}

// Slice is what one rank loads of one tensor.
type Slice struct {
	// Shape is the full tensor's shape.
	Shape []int
	// Rows are the row ranges [a,b) of the full tensor to load, in order;
	// empty when the rank loads nothing of it. A 1-D tensor is a column:
	// its elements are its rows.
	Rows [][2]int
	// Cols is the column range [a,b) within each row; [0,1) for a 1-D
	// tensor.
	Cols [2]int
}

// Elements is the number of elements the slice holds.
func (s Slice) Elements() int64 {
	var rows int64
	for _, r := range s.Rows {
		rows += int64(r[1] - r[0])
	}
	return rows * int64(s.Cols[1]-s.Cols[0])
}

// LocalShape is the shape of the loaded slice: the rows concatenated, the
// column range kept.
func (s Slice) LocalShape() []int {
	rows := 0
	for _, r := range s.Rows {
		rows += r[1] - r[0]
	}
	if len(s.Shape) == 1 {
		return []int{rows}
	}
	return []int{rows, s.Cols[1] - s.Cols[0]}
}

// Slice is the part of the tensor a rule names that this rank loads.
func (r Rank) Slice(rule Rule, s *spec.Spec) Slice {
	return r.slice(rule, dimsOf(s))
}

// RowRanges are the row ranges [a,b) of the full tensor this rank loads
// (elements for a 1-D tensor); none when it loads nothing of it.
func (r Rank) RowRanges(rule Rule, s *spec.Spec) [][2]int { return r.Slice(rule, s).Rows }

// ColRange is the column range [a,b) this rank loads of each of its rows:
// the head or MLP columns of a row-parallel weight, all columns otherwise,
// [0,1) for a 1-D tensor.
func (r Rank) ColRange(rule Rule, s *spec.Spec) [2]int { return r.Slice(rule, s).Cols }

func (r Rank) slice(rule Rule, d Dims) Slice {
	shape := rule.shape(d)
	out := Slice{Shape: shape, Cols: [2]int{0, 1}}
	if len(shape) == 2 {
		out.Cols = [2]int{0, shape[1]}
	}
	all := [][2]int{{0, shape[0]}}
	var span [2]int // the rank's range along the axis, in rows of the tensor
	switch rule.Axis {
	case AxisHeads:
		span = scale(r.Heads, d.HeadDim)
	case AxisKVHeads:
		span = scale(r.KVHeads, d.HeadDim)
	case AxisMLP:
		span = r.MLP
	case AxisVocab:
		span = r.Vocab
	}
	switch rule.Kind {
	case Replicated:
		out.Rows = all
	case RowParallel:
		switch {
		case !rule.Bias:
			out.Rows, out.Cols = all, span
		case r.Index == 0:
			out.Rows = all
		}
	case FusedQKVPerHead:
		out.Rows = [][2]int{scale(r.Heads, 3*d.HeadDim)}
	default: // ColumnParallel, VocabParallel
		out.Rows = [][2]int{span}
		if rule.Halves && d.Gated {
			out.Rows = append(out.Rows, [2]int{span[0] + d.Intermediate, span[1] + d.Intermediate})
		}
	}
	return out
}

func scale(r [2]int, by int) [2]int { return [2]int{r[0] * by, r[1] * by} }

// Needs reports whether stage i loads the tensor the rule names for layer
// (ignored unless the rule's Place is EveryLayer).
func (p *Plan) Needs(i int, rule Rule, layer int) bool {
	first, last := i == 0, i == len(p.Stages)-1
	switch rule.Place {
	case EveryLayer:
		l := p.Stages[i].Layers
		return layer >= l[0] && layer < l[1]
	case FirstStage:
		return first
	case LastStage:
		return last
	case Embeddings:
		return first || (last && p.Dims.Tied)
	case LMHead:
		return last && !p.Dims.Tied
	}
	return false
}

// MarshalText and UnmarshalText let rules be written as data.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

func (k *Kind) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, kindNames[:], (*int)(k), "kind")
}

func (a Axis) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

func (a *Axis) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, axisNames[:], (*int)(a), "axis")
}

func (p Place) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Place) UnmarshalText(b []byte) error {
	return unmarshalEnum(b, placeNames[:], (*int)(p), "place")
}

func enumString(names []string, i int, what string) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return what + "(" + strconv.Itoa(i) + ")"
}

func unmarshalEnum(b []byte, names []string, dst *int, what string) error {
	for i, n := range names {
		if n == string(b) {
			*dst = i
			return nil
		}
	}
	q, _ := json.Marshal(string(b))
	return fmt.Errorf("plan: unknown %s %s (want one of %s)", what, q, strings.Join(names, ", "))
}
