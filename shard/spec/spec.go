// Package spec turns a Hugging Face config.json into a Spec: the shape and
// semantics of a model, independent of where its weights live. Each
// architecture registers one Card for its model_type: its config parser,
// the tensors its checkpoint holds and how they are sliced, and how it is
// served. The planner, the loader, the models and the server all read it.
package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Norm names a normalisation.
type Norm string

const (
	LayerNorm Norm = "layernorm"
	RMSNorm   Norm = "rmsnorm"
)

// Activation names an MLP nonlinearity.
type Activation string

const (
	ReLU     Activation = "relu"
	SiLU     Activation = "silu" // used as SwiGLU in LLaMA's gated MLP
	GELUTanh Activation = "gelu_tanh"
	GELUErf  Activation = "gelu"
)

// Positions names how a model encodes token positions.
type Positions string

const (
	ALiBi      Positions = "alibi"
	RoPE       Positions = "rope"
	RoPE2D     Positions = "rope_2d" // ChatGLM: position and block position
	Learned    Positions = "learned"
	Sinusoidal Positions = "sinusoidal"
)

// Spec is everything the engine needs to know about a model's shape.
type Spec struct {
	// Arch is the config's model_type, e.g. "bloom".
	Arch string `json:"arch"`

	Hidden       int `json:"hidden"`
	Layers       int `json:"layers"`
	Heads        int `json:"heads"`
	KVHeads      int `json:"kv_heads"`
	HeadDim      int `json:"head_dim"`
	Intermediate int `json:"intermediate"`
	Vocab        int `json:"vocab"`

	Norm       Norm       `json:"norm"`
	NormEps    float64    `json:"norm_eps"`
	Activation Activation `json:"activation"`
	// Gated is true for GLU MLPs (LLaMA's SwiGLU, GeGLU).
	Gated     bool      `json:"gated"`
	Positions Positions `json:"positions"`
	RopeTheta float64   `json:"rope_theta,omitempty"`
	// RopeInvFreq are the RoPE pair frequencies of a scaled RoPE
	// (rope_scaling); nil for the plain RopeTheta series.
	RopeInvFreq []float32 `json:"rope_inv_freq,omitempty"`
	// RopeMscale scales RoPE's cos and sin (yarn's attention factor); 0
	// or 1 is none.
	RopeMscale float64 `json:"rope_mscale,omitempty"`
	// QKVBias marks q, k and v projections with a bias (Qwen2).
	QKVBias bool `json:"qkv_bias,omitempty"`
	// SlidingWindow, when positive, limits every layer's causal attention
	// to the last SlidingWindow keys, the query's own included (Mistral).
	SlidingWindow int `json:"sliding_window,omitempty"`
	// MaxPositions is the longest sequence the model supports; 0 is unbounded
	// (ALiBi extrapolates).
	MaxPositions   int  `json:"max_positions,omitempty"`
	TiedEmbeddings bool `json:"tied_embeddings"`

	// Special token ids; -1 when the config has none.
	BOS int `json:"bos"`
	EOS int `json:"eos"`
	PAD int `json:"pad"`

	// Extra holds architecture-specific settings (for example ChatGLM's
	// gmask id, Marian's decoder start id), keyed by config name.
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Sentinel errors, wrapped with the config's path and field.
var (
	ErrUnsupportedArch = errors.New("unsupported model architecture")
	ErrInvalidConfig   = errors.New("invalid model config")
)

// Load reads config.json from a model directory (or the file itself).
func Load(path string) (*Spec, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading model config: %w", err)
	}
	s, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse decodes config.json bytes and dispatches on model_type.
func Parse(raw []byte) (*Spec, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidConfig, err)
	}
	mt, ok := c["model_type"].(string)
	if !ok || mt == "" {
		return nil, fmt.Errorf("%w: no model_type (supported: %s)", ErrInvalidConfig, strings.Join(Supported(), ", "))
	}
	card, err := CardOf(mt)
	if err != nil {
		return nil, err
	}
	s, err := card.Parse(c)
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", mt, err)
	}
	s.Arch = mt
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s config: %w", mt, err)
	}
	return s, nil
}

// Validate checks the invariants every architecture relies on.
func (s *Spec) Validate() error {
	checks := []struct {
		name string
		v    int
	}{{"hidden size", s.Hidden}, {"layer count", s.Layers}, {"head count", s.Heads},
		{"kv head count", s.KVHeads}, {"head dim", s.HeadDim}, {"vocab size", s.Vocab}}
	for _, c := range checks {
		if c.v <= 0 {
			return fmt.Errorf("%w: %s must be positive, got %d", ErrInvalidConfig, c.name, c.v)
		}
	}
	if s.Heads%s.KVHeads != 0 {
		return fmt.Errorf("%w: %d attention heads are not a multiple of %d kv heads", ErrInvalidConfig, s.Heads, s.KVHeads)
	}
	if s.NormEps <= 0 {
		return fmt.Errorf("%w: norm epsilon must be positive, got %g", ErrInvalidConfig, s.NormEps)
	}
	return nil
}

// Config is a decoded config.json with typed accessors that record the
// first problem they meet, so a parser reads fields without an if per line.
type Config map[string]any

// Int reads an integer field, trying each name in turn (configs rename
// fields across architectures: n_head, num_attention_heads, ...).
func (c Config) Int(names ...string) (int, error) {
	for _, n := range names {
		v, ok := c[n]
		if !ok || v == nil {
			continue
		}
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) {
			return 0, fmt.Errorf("%w: %s must be an integer, got %v", ErrInvalidConfig, n, v)
		}
		return int(f), nil
	}
	return 0, fmt.Errorf("%w: missing %s", ErrInvalidConfig, strings.Join(names, " or "))
}

// IntOr reads an integer field, or returns def when it is absent or null.
func (c Config) IntOr(def int, names ...string) (int, error) {
	for _, n := range names {
		if v, ok := c[n]; ok && v != nil {
			return c.Int(n)
		}
	}
	return def, nil
}

// Float reads a number field, or returns def when it is absent or null.
func (c Config) Float(def float64, names ...string) (float64, error) {
	for _, n := range names {
		v, ok := c[n]
		if !ok || v == nil {
			continue
		}
		f, ok := v.(float64)
		if !ok {
			return 0, fmt.Errorf("%w: %s must be a number, got %v", ErrInvalidConfig, n, v)
		}
		return f, nil
	}
	return def, nil
}

// Bool reads a boolean field, or returns def when it is absent or null.
func (c Config) Bool(def bool, name string) (bool, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s must be true or false, got %v", ErrInvalidConfig, name, v)
	}
	return b, nil
}

// String reads a string field, or returns def when it is absent or null.
func (c Config) String(def, name string) (string, error) {
	v, ok := c[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: %s must be a string, got %v", ErrInvalidConfig, name, v)
	}
	return s, nil
}

// Reader collects the first error of a series of Config reads.
type Reader struct {
	C   Config
	Err error
}

func (r *Reader) keep(err error) {
	if r.Err == nil {
		r.Err = err
	}
}

// Int is Config.Int, remembering the first error.
func (r *Reader) Int(names ...string) int {
	v, err := r.C.Int(names...)
	r.keep(err)
	return v
}

// IntOr is Config.IntOr, remembering the first error.
func (r *Reader) IntOr(def int, names ...string) int {
	v, err := r.C.IntOr(def, names...)
	r.keep(err)
	return v
}

// Float is Config.Float, remembering the first error.
func (r *Reader) Float(def float64, names ...string) float64 {
	v, err := r.C.Float(def, names...)
	r.keep(err)
	return v
}

// Bool is Config.Bool, remembering the first error.
func (r *Reader) Bool(def bool, name string) bool {
	v, err := r.C.Bool(def, name)
	r.keep(err)
	return v
}

// String is Config.String, remembering the first error.
func (r *Reader) String(def, name string) string {
	v, err := r.C.String(def, name)
	r.keep(err)
	return v
}
