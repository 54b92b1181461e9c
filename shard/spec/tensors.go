package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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

// Rule names a checkpoint tensor and says how it is sliced. An
// architecture's card lists one rule for every tensor it reads.
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

// Rule constructors for the cards.

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

func halves(rs []Rule) []Rule {
	for i := range rs {
		rs[i].Halves = true
	}
	return rs
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
	return fmt.Errorf("spec: unknown %s %s (want one of %s)", what, q, strings.Join(names, ", "))
}
