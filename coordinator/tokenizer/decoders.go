package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder is HF's decode_chain: tokens in, tokens out; the results are
// concatenated.
type decoder interface {
	decodeChain(toks []string) []string
}

var decoderBuilders = map[string]func(raw json.RawMessage) (decoder, error){}

func init() {
	decoderBuilders["ByteLevel"] = func(json.RawMessage) (decoder, error) { return byteLevelDec{}, nil }
	decoderBuilders["Metaspace"] = func(raw json.RawMessage) (decoder, error) {
		m, err := parseMetaspace(raw)
		if err != nil {
			return nil, err
		}
		r, _ := utf8.DecodeRuneInString(m.replacement)
		return metaspaceDec{r, m.prepend != "never"}, nil
	}
	decoderBuilders["WordPiece"] = func(raw json.RawMessage) (decoder, error) {
		c := struct {
			Prefix  string `json:"prefix"`
			Cleanup bool   `json:"cleanup"`
		}{"##", true}
		err := json.Unmarshal(raw, &c)
		return wordPieceDec{c.Prefix, c.Cleanup}, err
	}
	decoderBuilders["BPEDecoder"] = func(raw json.RawMessage) (decoder, error) {
		c := struct {
			Suffix string `json:"suffix"`
		}{"</w>"}
		err := json.Unmarshal(raw, &c)
		return bpeDec{c.Suffix}, err
	}
	decoderBuilders["Replace"] = func(raw json.RawMessage) (decoder, error) {
		p, content, err := parseReplace(raw)
		return replaceDec{p, content}, err
	}
	decoderBuilders["ByteFallback"] = func(json.RawMessage) (decoder, error) { return byteFallbackDec{}, nil }
	decoderBuilders["Fuse"] = func(json.RawMessage) (decoder, error) { return fuseDec{}, nil }
	decoderBuilders["Strip"] = func(raw json.RawMessage) (decoder, error) {
		var c struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		r, n := utf8.DecodeRuneInString(c.Content)
		if n != len(c.Content) || n == 0 || c.Start < 0 || c.Stop < 0 {
			return nil, fmt.Errorf("%w: Strip decoder wants one content character and non-negative start/stop", ErrMalformed)
		}
		return stripDec{r, c.Start, c.Stop}, nil
	}
	decoderBuilders["Sequence"] = func(raw json.RawMessage) (decoder, error) {
		seq, err := buildList(raw, "decoders", buildDecoder)
		return seqDec(seq), err
	}
}

func buildDecoder(raw json.RawMessage) (decoder, error) {
	return build(raw, "decoder", decoderBuilders)
}

type seqDec []decoder

func (s seqDec) decodeChain(toks []string) []string {
	for _, d := range s {
		toks = d.decodeChain(toks)
	}
	return toks
}

// byteLevelDec maps the byte alphabet back to bytes; a token with any
// character outside the alphabet (an added token) contributes its own UTF-8.
type byteLevelDec struct{}

func (byteLevelDec) decodeChain(toks []string) []string {
	var buf []byte
	for _, t := range toks {
		n := len(buf)
		for _, r := range t {
			b, ok := charByte[r]
			if !ok {
				buf = append(buf[:n], t...)
				break
			}
			buf = append(buf, b)
		}
	}
	return []string{lossyUTF8(buf)}
}

type metaspaceDec struct {
	replacement rune
	prepend     bool
}

func (m metaspaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = strings.Map(func(r rune) rune {
			if r != m.replacement {
				return r
			}
			if i == 0 && m.prepend {
				return -1
			}
			return ' '
		}, t)
	}
	return out
}

type wordPieceDec struct {
	prefix  string
	cleanup bool
}

func (w wordPieceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if i != 0 {
			if strings.HasPrefix(t, w.prefix) {
				t = strings.Replace(t, w.prefix, "", 1)
			} else {
				t = " " + t
			}
		}
		if w.cleanup {
			for k := 0; k < len(cleanupPairs); k += 2 {
				t = strings.ReplaceAll(t, cleanupPairs[k], cleanupPairs[k+1])
			}
		}
		out[i] = t
	}
	return out
}

// cleanupPairs is HF's decoders::wordpiece::cleanup, applied in sequence (a
// one-pass strings.Replacer differs when one replacement creates another).
var cleanupPairs = []string{" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'",
	" n't", "n't", " 'm", "'m", " do not", " don't", " 's", "'s", " 've", "'ve", " 're", "'re"}

type bpeDec struct{ suffix string }

func (b bpeDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rep := " "
		if i == len(toks)-1 {
			rep = ""
		}
		out[i] = strings.ReplaceAll(t, b.suffix, rep)
	}
	return out
}

type replaceDec struct {
	p       pattern
	content string
}

func (r replaceDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		switch {
		case r.p.re != nil:
			out[i] = r.p.re.ReplaceAllLiteralString(t, r.content)
		case r.p.lit != "":
			out[i] = strings.ReplaceAll(t, r.p.lit, r.content)
		case r.p.scan != nil:
			out[i] = identity(t, 0).replaceMatches(r.p.matches(t), r.content).s
		default:
			out[i] = t
		}
	}
	return out
}

// byteFallbackDec turns runs of <0xNN> tokens into the text they encode; an
// invalid run becomes one U+FFFD per byte, as in HF.
type byteFallbackDec struct{}

func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return 0, false
	}
	h := t[3:5]
	if h[0] == '+' {
		h = h[1:] // Rust's from_str_radix accepts a leading '+'
	}
	v, err := strconv.ParseUint(h, 16, 8)
	return byte(v), err == nil
}

func (byteFallbackDec) decodeChain(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

type fuseDec struct{}

func (fuseDec) decodeChain(toks []string) []string { return []string{strings.Join(toks, "")} }

type stripDec struct {
	content     rune
	start, stop int
}

func (s stripDec) decodeChain(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		rs := []rune(t)
		a := 0
		for k := 0; k < s.start && k < len(rs) && rs[k] == s.content; k++ {
			a = k + 1
		}
		b := len(rs)
		for k := 0; k < s.stop && len(rs)-1-k >= 0 && rs[len(rs)-1-k] == s.content; k++ {
			b = len(rs) - 1 - k
		}
		if b < a {
			b = a
		}
		out[i] = string(rs[a:b])
	}
	return out
}
