package spec

import "fmt"

func init() {
	Register(Card{ModelType: "llama", Parse: parseLlama, Serving: Causal, Tensors: LlamaTensors})
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
	s.RopeTheta = r.Float(10000, "rope_theta")
	// transformers ≥ 5 nests rope settings under rope_parameters.
	if rp, ok := c["rope_parameters"].(map[string]any); ok {
		nested := &Reader{C: rp}
		s.RopeTheta = nested.Float(s.RopeTheta, "rope_theta")
		kind := nested.String("default", "rope_type")
		r.keep(nested.Err)
		if kind != "default" {
			return nil, fmt.Errorf("%w: rope_type %q is not supported (only default)", ErrInvalidConfig, kind)
		}
	}
	if rs, ok := c["rope_scaling"]; ok && rs != nil {
		return nil, fmt.Errorf("%w: rope_scaling is not supported", ErrInvalidConfig)
	}
	for _, f := range []string{"attention_bias", "mlp_bias"} {
		if r.Bool(false, f) {
			return nil, fmt.Errorf("%w: %s=true is not supported", ErrInvalidConfig, f)
		}
	}
	if act := r.String("silu", "hidden_act"); act != "silu" {
		return nil, fmt.Errorf("%w: hidden_act %q is not supported (only silu)", ErrInvalidConfig, act)
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return s, nil
}
