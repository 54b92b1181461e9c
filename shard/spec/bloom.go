package spec

import "fmt"

func init() {
	Register(Card{ModelType: "bloom", Parse: parseBloom, Serving: Causal, Tensors: concat(
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
	)})
}

func parseBloom(c Config) (*Spec, error) {
	r := &Reader{C: c}
	s := &Spec{
		Hidden:         r.Int("hidden_size", "n_embed"),
		Layers:         r.Int("n_layer", "num_hidden_layers"),
		Heads:          r.Int("n_head", "num_attention_heads"),
		Vocab:          r.Int("vocab_size"),
		Norm:           LayerNorm,
		NormEps:        r.Float(1e-5, "layer_norm_epsilon"),
		Activation:     GELUTanh,
		Positions:      ALiBi,
		TiedEmbeddings: r.Bool(true, "tie_word_embeddings"),
		BOS:            r.IntOr(-1, "bos_token_id"),
		EOS:            r.IntOr(-1, "eos_token_id"),
		PAD:            r.IntOr(-1, "pad_token_id"),
	}
	postLN := r.Bool(false, "apply_residual_connection_post_layernorm")
	if r.Err != nil {
		return nil, r.Err
	}
	if postLN {
		return nil, fmt.Errorf("%w: apply_residual_connection_post_layernorm=true is not supported", ErrInvalidConfig)
	}
	if s.Heads <= 0 || s.Hidden%s.Heads != 0 {
		return nil, fmt.Errorf("%w: hidden size %d is not a multiple of %d heads", ErrInvalidConfig, s.Hidden, s.Heads)
	}
	s.KVHeads = s.Heads
	s.HeadDim = s.Hidden / s.Heads
	s.Intermediate = 4 * s.Hidden
	return s, nil
}
