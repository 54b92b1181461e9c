package spec

import "fmt"

// BERT loads only whole, and the coordinator serves it in process.
func init() { Register(Card{ModelType: "bert", Parse: parseBert, Serving: Encoder}) }

// parseBert reads a BERT encoder config. Extra carries type_vocab_size.
func parseBert(c Config) (*Spec, error) {
	r := &Reader{C: c}
	s := &Spec{
		Hidden:         r.Int("hidden_size"),
		Layers:         r.Int("num_hidden_layers"),
		Heads:          r.Int("num_attention_heads"),
		Intermediate:   r.Int("intermediate_size"),
		Vocab:          r.Int("vocab_size"),
		Norm:           LayerNorm,
		NormEps:        r.Float(1e-12, "layer_norm_eps"),
		Positions:      Learned,
		MaxPositions:   r.Int("max_position_embeddings"),
		TiedEmbeddings: r.Bool(true, "tie_word_embeddings"),
		BOS:            r.IntOr(-1, "bos_token_id"),
		EOS:            r.IntOr(-1, "eos_token_id"),
		PAD:            r.IntOr(-1, "pad_token_id"),
	}
	types := r.IntOr(2, "type_vocab_size")
	act := r.String("gelu", "hidden_act")
	posType := r.String("absolute", "position_embedding_type")
	decoder := r.Bool(false, "is_decoder")
	cross := r.Bool(false, "add_cross_attention")
	if r.Err != nil {
		return nil, r.Err
	}
	var err error
	if s.Activation, err = hfActivation("hidden_act", act); err != nil {
		return nil, err
	}
	if posType != "absolute" {
		return nil, fmt.Errorf("%w: position_embedding_type %q is not supported (only absolute)", ErrInvalidConfig, posType)
	}
	if decoder || cross {
		return nil, fmt.Errorf("%w: is_decoder/add_cross_attention are not supported (BERT is served as an encoder)", ErrInvalidConfig)
	}
	if types <= 0 {
		return nil, fmt.Errorf("%w: type_vocab_size must be positive, got %d", ErrInvalidConfig, types)
	}
	if err := splitHeads(s); err != nil {
		return nil, err
	}
	s.Extra = map[string]float64{"type_vocab_size": float64(types)}
	return s, nil
}

// splitHeads sets KVHeads and HeadDim for plain multi-head attention.
func splitHeads(s *Spec) error {
	if s.Heads <= 0 || s.Hidden%s.Heads != 0 {
		return fmt.Errorf("%w: hidden size %d is not a multiple of %d heads", ErrInvalidConfig, s.Hidden, s.Heads)
	}
	s.KVHeads = s.Heads
	s.HeadDim = s.Hidden / s.Heads
	return nil
}

// hfActivation maps a transformers ACT2FN name onto an Activation.
func hfActivation(field, name string) (Activation, error) {
	switch name {
	case "relu":
		return ReLU, nil
	case "gelu":
		return GELUErf, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_fast":
		return GELUTanh, nil
	case "silu", "swish":
		return SiLU, nil
	}
	return "", fmt.Errorf("%w: %s %q is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, silu)", ErrInvalidConfig, field, name)
}
