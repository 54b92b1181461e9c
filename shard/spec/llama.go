package spec

import "fmt"

// The LLaMA family: LLaMA (Llama 2 and 3.x), Mistral and Qwen2 share
// LLaMA's checkpoint layout and block; Qwen2 adds q/k/v biases.
func init() {
	Register(Card{ModelType: "llama", Parse: parseLlama, Serving: Causal, Tensors: LlamaTensors})
	Register(Card{ModelType: "mistral", Parse: parseMistral, Serving: Causal, Tensors: LlamaTensors})
	Register(Card{ModelType: "qwen2", Parse: parseQwen2, Serving: Causal, Tensors: concat(LlamaTensors,
		[]Rule{
			{Pattern: "model.layers.{layer}.self_attn.q_proj.bias", Kind: ColumnParallel, Axis: AxisHeads, Bias: true},
			{Pattern: "model.layers.{layer}.self_attn.k_proj.bias", Kind: ColumnParallel, Axis: AxisKVHeads, Bias: true},
			{Pattern: "model.layers.{layer}.self_attn.v_proj.bias", Kind: ColumnParallel, Axis: AxisKVHeads, Bias: true},
		})})
}

// LlamaTensors is LLaMA's checkpoint layout, which most decoders since
// share (the planner estimates architectures without a card from it).
var LlamaTensors = concat(
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

func parseLlama(c Config) (*Spec, error) {
	s, err := parseLlamaFamily(c)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"attention_bias", "mlp_bias"} {
		b, err := c.Bool(false, f)
		if err != nil {
			return nil, err
		}
		if b {
			return nil, fmt.Errorf("%w: %s=true is not supported", ErrInvalidConfig, f)
		}
	}
	return s, nil
}

// parseMistral reads a Mistral config: LLaMA with a sliding window
// (sliding_window; null, as Mistral v0.2 and later have it, is none).
func parseMistral(c Config) (*Spec, error) {
	s, err := parseLlamaFamily(c)
	if err != nil {
		return nil, err
	}
	if s.SlidingWindow, err = c.IntOr(0, "sliding_window"); err != nil {
		return nil, err
	}
	if s.SlidingWindow < 0 {
		return nil, fmt.Errorf("%w: sliding_window %d is negative", ErrInvalidConfig, s.SlidingWindow)
	}
	return s, nil
}

// parseQwen2 reads a Qwen2/Qwen2.5 config: LLaMA with q/k/v biases and,
// in the small models, tied embeddings.
func parseQwen2(c Config) (*Spec, error) {
	s, err := parseLlamaFamily(c)
	if err != nil {
		return nil, err
	}
	b, err := c.Bool(false, "use_sliding_window")
	if err != nil {
		return nil, err
	}
	if b {
		return nil, fmt.Errorf("%w: use_sliding_window=true is not supported", ErrInvalidConfig)
	}
	s.QKVBias = true
	return s, nil
}

func parseLlamaFamily(c Config) (*Spec, error) {
	r := &Reader{C: c}
	s := &Spec{
		Hidden:         r.Int("hidden_size"),
		Layers:         r.Int("num_hidden_layers"),
		Heads:          r.Int("num_attention_heads"),
		Intermediate:   r.Int("intermediate_size"),
		Vocab:          r.Int("vocab_size"),
		Norm:           RMSNorm,
		NormEps:        r.Float(1e-6, "rms_norm_eps"),
		Activation:     SiLU,
		Gated:          true,
		Positions:      RoPE,
		MaxPositions:   r.IntOr(0, "max_position_embeddings"),
		TiedEmbeddings: r.Bool(false, "tie_word_embeddings"),
		BOS:            r.IntOr(-1, "bos_token_id"),
		EOS:            r.IntOr(-1, "eos_token_id"),
		PAD:            r.IntOr(-1, "pad_token_id"),
	}
	s.KVHeads = r.IntOr(s.Heads, "num_key_value_heads")
	if s.Heads > 0 {
		s.HeadDim = r.IntOr(s.Hidden/s.Heads, "head_dim")
	}
	if act := r.String("silu", "hidden_act"); act != "silu" {
		return nil, fmt.Errorf("%w: hidden_act %q is not supported (only silu)", ErrInvalidConfig, act)
	}
	if r.Err != nil {
		return nil, r.Err
	}
	if s.HeadDim <= 0 || s.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%w: head dim %d must be positive and even for RoPE", ErrInvalidConfig, s.HeadDim)
	}
	if err := parseRope(c, s); err != nil {
		return nil, err
	}
	return s, nil
}
