package tokenizer

// StreamDecoder detokenizes one id at a time for streaming. Add returns only
// text that later ids cannot change: never part of a UTF-8 character, never a
// trailing U+FFFD that more bytes could complete, never a run of byte
// fallback tokens still open. The concatenation of everything Add and Flush
// return equals Decode of all the ids.
//
// It works like HF's DecodeStream: it decodes a short window (the ids of the
// previous emission as context, plus the new ones) and emits the part of the
// window's text beyond the context's text. The context keeps position-
// dependent decoders (Metaspace, WordPiece, Strip) seeing the new ids as they
// would in the full sequence. Unlike HF's it never re-seeds the context from
// held ids, which would swallow text. A StreamDecoder is not safe for
// concurrent use.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	ids         []int32
	prefix      string // decode(ids[:prefixIndex]): text already emitted from this window
	prefixIndex int
	toks        []string
}

// NewDecoder starts a stream. skipSpecial is as in Decode.
func (t *Tokenizer) NewDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

func (d *StreamDecoder) decode(ids []int32) string {
	d.toks = d.toks[:0]
	for _, id := range ids {
		tok, special, _ := d.t.token(id)
		if d.skipSpecial && special {
			continue
		}
		d.toks = append(d.toks, tok)
	}
	return d.t.decodeTokens(d.toks)
}

// openByteRun reports whether the last token that survives skipping is a
// <0xNN> token of a ByteFallback decoder: the run may still grow, and HF
// decodes a run as a whole.
func (d *StreamDecoder) openByteRun() bool {
	if !d.t.byteFB {
		return false
	}
	for i := len(d.ids) - 1; i >= 0; i-- {
		tok, special, _ := d.t.token(d.ids[i])
		if d.skipSpecial && special {
			continue
		}
		_, isByte := parseByteToken(tok)
		return isByte
	}
	return false
}

// Add feeds one id and returns the newly completed text (often "").
func (d *StreamDecoder) Add(id int32) (string, error) {
	if _, _, ok := d.t.token(id); !ok {
		return "", ErrUnknownID
	}
	d.ids = append(d.ids, id)
	s := d.decode(d.ids)
	if len(s) <= len(d.prefix) || endsWithReplacement(s) || d.openByteRun() || s[:len(d.prefix)] != d.prefix {
		return "", nil
	}
	out := s[len(d.prefix):]
	n := copy(d.ids, d.ids[d.prefixIndex:])
	d.ids = d.ids[:n]
	d.prefix = d.decode(d.ids)
	d.prefixIndex = len(d.ids)
	return out, nil
}

// Flush returns the text still held back and resets the stream.
func (d *StreamDecoder) Flush() string {
	s := d.decode(d.ids)
	out := ""
	if len(s) > len(d.prefix) && s[:len(d.prefix)] == d.prefix {
		out = s[len(d.prefix):]
	}
	d.ids, d.prefix, d.prefixIndex = d.ids[:0], "", 0
	return out
}

func endsWithReplacement(s string) bool {
	return len(s) >= 3 && s[len(s)-3:] == "\uFFFD"
}
