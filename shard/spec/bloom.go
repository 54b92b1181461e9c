package spec

import "fmt"

func init() { Register("bloom", parseBloom) }

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
