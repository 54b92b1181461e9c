package spec

import "fmt"

// Marian loads only whole, on one worker.
func init() { Register(Card{ModelType: "marian", Parse: parseMarian, Serving: EncoderDecoder}) }

// parseMarian reads a Marian (original Transformer) encoder-decoder
// config. The Spec's Layers, Heads and Intermediate describe the decoder,
// which holds the KV cache; Extra carries encoder_layers,
// encoder_attention_heads, encoder_ffn_dim, decoder_start_token_id and
// scale_embedding (1 or 0).
func parseMarian(c Config) (*Spec, error) {
	r := &Reader{C: c}
	s := &Spec{
		Hidden:         r.Int("d_model"),
		Layers:         r.Int("decoder_layers"),
		Heads:          r.Int("decoder_attention_heads"),
		Intermediate:   r.Int("decoder_ffn_dim"),
		Vocab:          r.Int("vocab_size"),
		Norm:           LayerNorm,
		NormEps:        1e-5, // nn.LayerNorm's default; Marian has no setting
		Positions:      Sinusoidal,
		MaxPositions:   r.Int("max_position_embeddings"),
		TiedEmbeddings: r.Bool(true, "tie_word_embeddings"),
		BOS:            r.IntOr(-1, "bos_token_id"),
		EOS:            r.IntOr(-1, "eos_token_id"),
		PAD:            r.IntOr(-1, "pad_token_id"),
	}
	encLayers := r.Int("encoder_layers")
	encHeads := r.Int("encoder_attention_heads")
	encFFN := r.Int("encoder_ffn_dim")
	start := r.Int("decoder_start_token_id")
	scale := r.Bool(false, "scale_embedding")
	shared := r.Bool(true, "share_encoder_decoder_embeddings")
	decVocab := r.IntOr(s.Vocab, "decoder_vocab_size")
	act := r.String("gelu", "activation_function")
	if r.Err != nil {
		return nil, r.Err
	}
	var err error
	if s.Activation, err = hfActivation("activation_function", act); err != nil {
		return nil, err
	}
	if !shared || decVocab != s.Vocab {
		return nil, fmt.Errorf("%w: separate encoder and decoder vocabularies (share_encoder_decoder_embeddings=false, decoder_vocab_size %d) are not supported",
			ErrInvalidConfig, decVocab)
	}
	if encLayers <= 0 || encFFN <= 0 || encHeads <= 0 || s.Hidden%encHeads != 0 {
		return nil, fmt.Errorf("%w: encoder of %d layers, %d heads, ffn %d does not fit d_model %d", ErrInvalidConfig, encLayers, encHeads, encFFN, s.Hidden)
	}
	if start < 0 || start >= s.Vocab {
		return nil, fmt.Errorf("%w: decoder_start_token_id %d is outside the vocabulary of %d", ErrInvalidConfig, start, s.Vocab)
	}
	if s.Hidden%2 != 0 {
		return nil, fmt.Errorf("%w: d_model %d must be even for sinusoidal positions", ErrInvalidConfig, s.Hidden)
	}
	if err := splitHeads(s); err != nil {
		return nil, err
	}
	s.Extra = map[string]float64{"encoder_layers": float64(encLayers), "encoder_attention_heads": float64(encHeads),
		"encoder_ffn_dim": float64(encFFN), "decoder_start_token_id": float64(start), "scale_embedding": b2f(scale)}
	return s, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
