package tokenizer

import "strings"

// Piece returns the bytes token id adds to the text when it is generated
// in the middle of a sequence, before any decoder merges it with its
// neighbours: a byte-level token's raw bytes (possibly part of a UTF-8
// character), a byte-fallback token's byte, a metaspace token with its
// leading space. Constrained decoding matches these against an automaton.
// ok is false for special tokens and unknown ids, which generation under a
// constraint must never pick.
func (t *Tokenizer) Piece(id int32) ([]byte, bool) {
	tok, special, ok := t.token(id)
	if !ok || special {
		return nil, false
	}
	if t.decoder == nil {
		return []byte(" " + tok), true
	}
	b, _ := piece(t.decoder, []byte(tok), false)
	return b, true
}

// piece applies one decoder to a single mid-sequence token. fused reports
// whether a Fuse decoder already ran, after which Strip acts on the whole
// text's ends, never on a token in the middle.
func piece(d decoder, tok []byte, fused bool) ([]byte, bool) {
	switch d := d.(type) {
	case seqDec:
		for _, s := range d {
			tok, fused = piece(s, tok, fused)
		}
		return tok, fused
	case byteLevelDec:
		var out []byte
		for _, r := range string(tok) {
			b, ok := charByte[r]
			if !ok {
				return tok, fused // an added token spells its own text
			}
			out = append(out, b)
		}
		return out, fused
	case byteFallbackDec:
		if b, ok := parseByteToken(string(tok)); ok {
			return []byte{b}, fused
		}
		return tok, fused
	case fuseDec:
		return tok, true
	case stripDec:
		if fused {
			return tok, fused
		}
		return []byte(d.decodeChain([]string{string(tok)})[0]), fused
	case metaspaceDec:
		return []byte(strings.ReplaceAll(string(tok), string(d.replacement), " ")), fused
	}
	// Decoders that act on each token alike (Replace, WordPiece and BPE
	// suffixes): decode the token as the second of two, so that rules for
	// the first token of a text do not apply.
	out := d.decodeChain([]string{"", string(tok)})
	return []byte(strings.Join(out[1:], "")), fused
}
