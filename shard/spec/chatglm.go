package spec

import "fmt"

func init() {
	Register(Card{ModelType: "chatglm", Parse: parseChatGLM, Serving: Causal, Tensors: concat(
		[]Rule{weight("transformer.word_embeddings.weight", VocabParallel, AxisVocab, Embeddings)},
		norm("transformer.layers.{layer}.input_layernorm", EveryLayer, true),
		linear("transformer.layers.{layer}.attention.query_key_value", FusedQKVPerHead, AxisHeads, EveryLayer),
		linear("transformer.layers.{layer}.attention.dense", RowParallel, AxisHeads, EveryLayer),
		norm("transformer.layers.{layer}.post_attention_layernorm", EveryLayer, true),
		halves(linear("transformer.layers.{layer}.mlp.dense_h_to_4h", ColumnParallel, AxisMLP, EveryLayer)),
		linear("transformer.layers.{layer}.mlp.dense_4h_to_h", RowParallel, AxisMLP, EveryLayer),
		norm("transformer.final_layernorm", LastStage, true),
		[]Rule{weight("lm_head.weight", VocabParallel, AxisVocab, LMHead)},
	)})
}

// parseChatGLM reads a ChatGLM-6B config: a prefix LM with 2-D RoPE and
// DeepNorm residuals. ChatGLM2/3 share the model_type but not the
// architecture (multi-query attention, RMSNorm, SwiGLU); they are refused.
// Extra carries mask_token_id and gmask_token_id, which the position ids
// depend on, and glu (1 for GLM-130B's GeGLU MLP).
func parseChatGLM(c Config) (*Spec, error) {
	for _, f := range []string{"multi_query_attention", "padded_vocab_size", "rmsnorm", "kv_channels"} {
		if _, ok := c[f]; ok {
			return nil, fmt.Errorf("%w: %s is a ChatGLM2/3 setting; only ChatGLM-6B (GLM) checkpoints are supported", ErrInvalidConfig, f)
		}
	}
	r := &Reader{C: c}
	s := &Spec{
		Hidden:         r.Int("hidden_size"),
		Layers:         r.Int("num_layers"),
		Heads:          r.Int("num_attention_heads"),
		Vocab:          r.Int("vocab_size"),
		Norm:           LayerNorm,
		NormEps:        r.Float(1e-5, "layernorm_epsilon"),
		Activation:     GELUTanh,
		Positions:      RoPE2D,
		RopeTheta:      10000,
		MaxPositions:   r.IntOr(0, "max_sequence_length"),
		TiedEmbeddings: r.Bool(false, "tie_word_embeddings"),
		BOS:            r.Int("bos_token_id"),
		EOS:            r.IntOr(-1, "eos_token_id"),
		PAD:            r.IntOr(-1, "pad_token_id"),
	}
	s.Intermediate = r.IntOr(4*s.Hidden, "inner_hidden_size")
	gmask := r.Int("gmask_token_id")
	mask := r.IntOr(-1, "mask_token_id")
	twoD := r.Bool(true, "position_encoding_2d")
	glu := r.String("", "glu_activation")
	if r.Err != nil {
		return nil, r.Err
	}
	if !twoD {
		return nil, fmt.Errorf("%w: position_encoding_2d=false is not supported (only ChatGLM-6B's 2-D RoPE)", ErrInvalidConfig)
	}
	if v, ok := c["pre_seq_len"]; ok && v != nil {
		return nil, fmt.Errorf("%w: pre_seq_len (P-tuning prefix encoder) is not supported", ErrInvalidConfig)
	}
	if q, _ := c.IntOr(0, "quantization_bit"); q != 0 {
		return nil, fmt.Errorf("%w: quantization_bit=%d is not supported (load float weights)", ErrInvalidConfig, q)
	}
	switch glu {
	case "":
	case "geglu":
		// GLM-130B: the MLP input projection splits into x1, x2 and the
		// block computes x1·GELU(x2), with the exact GELU.
		s.Gated, s.Activation = true, GELUErf
	default:
		return nil, fmt.Errorf("%w: glu_activation %q is not supported (only geglu)", ErrInvalidConfig, glu)
	}
	if s.Heads <= 0 || s.Hidden%s.Heads != 0 {
		return nil, fmt.Errorf("%w: hidden size %d is not a multiple of %d heads", ErrInvalidConfig, s.Hidden, s.Heads)
	}
	s.KVHeads = s.Heads
	s.HeadDim = s.Hidden / s.Heads
	if s.HeadDim%4 != 0 {
		return nil, fmt.Errorf("%w: head dim %d must be a multiple of 4 for 2-D RoPE (two rotate-half halves)", ErrInvalidConfig, s.HeadDim)
	}
	s.Extra = map[string]float64{"gmask_token_id": float64(gmask), "mask_token_id": float64(mask)}
	return s, nil
}
