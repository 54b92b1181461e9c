package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// split is one pre-token: a piece of normalized text the model encodes on
// its own. byteLevel marks pieces the ByteLevel pre-tokenizer mapped to its
// byte alphabet (kept implicit: the model reads the raw bytes).
type split struct {
	n         nstr
	byteLevel bool
}

// preTokenizer cuts a split into smaller ones and calls emit for each
// non-empty result, in order.
type preTokenizer interface {
	preTokenize(in split, emit func(split))
}

var preTokenizerBuilders = map[string]func(raw json.RawMessage) (preTokenizer, error){}

func init() {
	preTokenizerBuilders["ByteLevel"] = func(raw json.RawMessage) (preTokenizer, error) {
		c := struct {
			AddPrefixSpace bool `json:"add_prefix_space"`
			UseRegex       bool `json:"use_regex"`
		}{true, true}
		err := json.Unmarshal(raw, &c)
		return byteLevelPre{c.AddPrefixSpace, c.UseRegex}, err
	}
	preTokenizerBuilders["Metaspace"] = func(raw json.RawMessage) (preTokenizer, error) {
		m, err := parseMetaspace(raw)
		return m, err
	}
	preTokenizerBuilders["BertPreTokenizer"] = func(json.RawMessage) (preTokenizer, error) { return bertPre{}, nil }
	preTokenizerBuilders["Whitespace"] = func(json.RawMessage) (preTokenizer, error) { return whitespacePre{}, nil }
	preTokenizerBuilders["WhitespaceSplit"] = func(json.RawMessage) (preTokenizer, error) {
		return charSplitPre{isWhitespace, behaviorRemoved}, nil
	}
	preTokenizerBuilders["Punctuation"] = func(raw json.RawMessage) (preTokenizer, error) {
		c := struct {
			Behavior string `json:"behavior"`
		}{"Isolated"}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		b, err := parseBehavior(c.Behavior)
		return charSplitPre{isBertPunct, b}, err
	}
	preTokenizerBuilders["Digits"] = func(raw json.RawMessage) (preTokenizer, error) {
		var c struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		b := behaviorContiguous
		if c.Individual {
			b = behaviorIsolated
		}
		return charSplitPre{unicode.IsNumber, b}, nil
	}
	preTokenizerBuilders["Split"] = func(raw json.RawMessage) (preTokenizer, error) {
		var c struct {
			Pattern  json.RawMessage `json:"pattern"`
			Behavior string          `json:"behavior"`
			Invert   bool            `json:"invert"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		p, err := parsePattern(c.Pattern)
		if err != nil {
			return nil, err
		}
		b, err := parseBehavior(c.Behavior)
		return patternSplitPre{p, b, c.Invert}, err
	}
	preTokenizerBuilders["Sequence"] = func(raw json.RawMessage) (preTokenizer, error) {
		seq, err := buildList(raw, "pretokenizers", buildPreTokenizer)
		return seqPre(seq), err
	}
}

func buildPreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	return build(raw, "pre_tokenizer", preTokenizerBuilders)
}

type seqPre []preTokenizer

func (s seqPre) preTokenize(in split, emit func(split)) {
	if len(s) == 0 {
		emit(in)
		return
	}
	rest := s[1:]
	s[0].preTokenize(in, func(x split) { rest.preTokenize(x, emit) })
}

// byteLevelPre is GPT-2's pre-tokenizer: optional prefix space, the GPT-2
// regex split (hand-written, see gpt2Next), then the byte alphabet.
type byteLevelPre struct{ addPrefixSpace, useRegex bool }

func (b byteLevelPre) preTokenize(in split, emit func(split)) {
	n := in.n
	if b.addPrefixSpace && !strings.HasPrefix(n.s, " ") {
		n = n.prepend(" ")
	}
	if !b.useRegex {
		if n.s != "" {
			emit(split{n, true})
		}
		return
	}
	for i := 0; i < len(n.s); {
		j := gpt2Next(n.s, i)
		emit(split{n.slice(i, j), true})
		i = j
	}
}

// Character classes of the GPT-2 pattern
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
const (
	clsOther = iota
	clsLetter
	clsNumber
	clsSpace
)

var asciiClass = func() (t [128]uint8) {
	for c := range 128 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			t[c] = clsLetter
		case c >= '0' && c <= '9':
			t[c] = clsNumber
		case c == ' ' || (c >= '\t' && c <= '\r'):
			t[c] = clsSpace
		}
	}
	return t
}()

func classAt(s string, i int) (uint8, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	// Lead bytes E5-E9 with two continuation bytes are U+5000-U+9FFF, CJK
	// ideographs, without decoding.
	if c >= 0xE5 && c <= 0xE9 && i+2 < len(s) && s[i+1]&0xC0 == 0x80 && s[i+2]&0xC0 == 0x80 {
		return clsLetter, 3
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0xAC00 && r <= 0xD7A3: // CJK ideographs, Hangul: all Lo
		return clsLetter, size
	case unicode.IsLetter(r):
		return clsLetter, size
	case unicode.IsNumber(r):
		return clsNumber, size
	case unicode.Is(unicode.White_Space, r):
		return clsSpace, size
	}
	return clsOther, size
}

// gpt2Next returns the end of the GPT-2 regex match that starts at i.
func gpt2Next(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	j := i
	if s[i] == ' ' && i+1 < len(s) {
		j = i + 1
	}
	cls, size := classAt(s, j)
	if cls == clsSpace {
		// \s+(?!\S) then \s+: the whitespace run, less its last character
		// when a non-space follows and the run is longer than one.
		k, last := i, 0
		for k < len(s) {
			c, sz := classAt(s, k)
			if c != clsSpace {
				break
			}
			k += sz
			last = sz
		}
		if k < len(s) && k-last > i {
			return k - last
		}
		return k
	}
	k := j + size
	for k < len(s) {
		c, sz := classAt(s, k)
		if c != cls {
			break
		}
		k += sz
	}
	return k
}

// metaspacePre is the Metaspace pre-tokenizer (SentencePiece style).
type metaspacePre struct {
	replacement string
	prepend     string // "always", "first" or "never"
	split       bool
}

func parseMetaspace(raw json.RawMessage) (metaspacePre, error) {
	c := struct {
		Replacement    string  `json:"replacement"`
		AddPrefixSpace *bool   `json:"add_prefix_space"`
		PrependScheme  *string `json:"prepend_scheme"`
		Split          *bool   `json:"split"`
	}{Replacement: "▁"}
	if err := json.Unmarshal(raw, &c); err != nil {
		return metaspacePre{}, err
	}
	if utf8.RuneCountInString(c.Replacement) != 1 {
		return metaspacePre{}, fmt.Errorf("%w: Metaspace replacement %q must be one character", ErrMalformed, c.Replacement)
	}
	m := metaspacePre{replacement: c.Replacement, prepend: "always", split: true}
	if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
		m.prepend = "never"
	}
	if c.PrependScheme != nil {
		switch *c.PrependScheme {
		case "always", "first", "never":
			m.prepend = *c.PrependScheme
		default:
			return m, fmt.Errorf("%w: Metaspace prepend_scheme %q", ErrMalformed, *c.PrependScheme)
		}
	}
	if c.Split != nil {
		m.split = *c.Split
	}
	return m, nil
}

func (m metaspacePre) preTokenize(in split, emit func(split)) {
	n := in.n.replace(" ", m.replacement)
	if !strings.HasPrefix(n.s, m.replacement) &&
		(m.prepend == "always" || (m.prepend == "first" && n.origStart() == 0)) {
		n = n.prepend(m.replacement)
	}
	if !m.split {
		if n.s != "" {
			emit(split{n, in.byteLevel})
		}
		return
	}
	r, _ := utf8.DecodeRuneInString(m.replacement)
	splitChars(in, n, func(c rune) bool { return c == r }, behaviorMergedWithNext, emit)
}

// bertPre is BertPreTokenizer: split on whitespace (dropped) and on
// punctuation (kept, one character each).
type bertPre struct{}

func (bertPre) preTokenize(in split, emit func(split)) {
	n := in.n
	start := -1
	for i, r := range n.s {
		ws, p := isWhitespace(r), isBertPunct(r)
		if !ws && !p {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			emit(split{n.slice(start, i), in.byteLevel})
			start = -1
		}
		if p {
			emit(split{n.slice(i, i+utf8.RuneLen(r)), in.byteLevel})
		}
	}
	if start >= 0 {
		emit(split{n.slice(start, len(n.s)), in.byteLevel})
	}
}

// whitespacePre is HF's Whitespace pre-tokenizer: \w+|[^\w\s]+.
type whitespacePre struct{}

func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.In(r, unicode.M, unicode.Pc, unicode.Nl) ||
		r == 0x200C || r == 0x200D
}

func (whitespacePre) preTokenize(in split, emit func(split)) {
	n := in.n
	start, kind := -1, 0 // kind 1: word, 2: other
	for i, r := range n.s {
		k := 2
		switch {
		case isWordChar(r):
			k = 1
		case isWhitespace(r):
			k = 0
		}
		if k != kind && start >= 0 {
			emit(split{n.slice(start, i), in.byteLevel})
			start = -1
		}
		if k != 0 && start < 0 {
			start = i
		}
		kind = k
	}
	if start >= 0 {
		emit(split{n.slice(start, len(n.s)), in.byteLevel})
	}
}

// Split delimiter behaviors (HF's SplitDelimiterBehavior).
const (
	behaviorRemoved = iota
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

func parseBehavior(s string) (int, error) {
	switch s {
	case "Removed":
		return behaviorRemoved, nil
	case "Isolated":
		return behaviorIsolated, nil
	case "MergedWithPrevious":
		return behaviorMergedWithPrevious, nil
	case "MergedWithNext":
		return behaviorMergedWithNext, nil
	case "Contiguous":
		return behaviorContiguous, nil
	}
	return 0, fmt.Errorf("%w: split behavior %q", ErrMalformed, s)
}

type charSplitPre struct {
	f        func(rune) bool
	behavior int
}

func (c charSplitPre) preTokenize(in split, emit func(split)) {
	splitChars(in, in.n, c.f, c.behavior, emit)
}

// splitChars splits n on every character for which f holds (each one a
// separate match, like HF's char patterns).
func splitChars(in split, n nstr, f func(rune) bool, behavior int, emit func(split)) {
	var ms []match
	last := 0
	for i, r := range n.s {
		if f(r) {
			if last < i {
				ms = append(ms, match{last, i, false})
			}
			e := i + utf8.RuneLen(r)
			ms = append(ms, match{i, e, true})
			last = e
		}
	}
	if last < len(n.s) {
		ms = append(ms, match{last, len(n.s), false})
	}
	splitBehavior(in, n, ms, behavior, emit)
}

type patternSplitPre struct {
	p        pattern
	behavior int
	invert   bool
}

func (p patternSplitPre) preTokenize(in split, emit func(split)) {
	n := in.n
	var ms []match
	last := 0
	for _, m := range p.p.matches(n.s) {
		if last < m[0] {
			ms = append(ms, match{last, m[0], p.invert})
		}
		ms = append(ms, match{m[0], m[1], !p.invert})
		last = m[1]
	}
	if last < len(n.s) {
		ms = append(ms, match{last, len(n.s), p.invert})
	}
	splitBehavior(in, n, ms, p.behavior, emit)
}

// match is one range of a pattern search; ranges cover the whole text.
type match struct {
	a, b    int
	isMatch bool
}

// splitBehavior is HF's NormalizedString::split: it turns alternating
// match/non-match ranges into pieces according to the behavior.
func splitBehavior(in split, n nstr, ms []match, behavior int, emit func(split)) {
	type piece struct {
		a, b   int
		remove bool
	}
	var ps []piece
	switch behavior {
	case behaviorRemoved, behaviorIsolated:
		for _, m := range ms {
			ps = append(ps, piece{m.a, m.b, behavior == behaviorRemoved && m.isMatch})
		}
	case behaviorContiguous, behaviorMergedWithPrevious:
		prev := false
		for _, m := range ms {
			merge := m.isMatch == prev
			if behavior == behaviorMergedWithPrevious {
				merge = m.isMatch && !prev
			}
			if merge && len(ps) > 0 {
				ps[len(ps)-1].b = m.b
			} else {
				ps = append(ps, piece{m.a, m.b, false})
			}
			prev = m.isMatch
		}
	case behaviorMergedWithNext:
		prev := false
		for i := len(ms) - 1; i >= 0; i-- {
			m := ms[i]
			if m.isMatch && !prev && len(ps) > 0 {
				ps[len(ps)-1].a = m.a
			} else {
				ps = append(ps, piece{m.a, m.b, false})
			}
			prev = m.isMatch
		}
		for i, j := 0, len(ps)-1; i < j; i, j = i+1, j-1 {
			ps[i], ps[j] = ps[j], ps[i]
		}
	}
	for _, p := range ps {
		if !p.remove && p.b > p.a {
			emit(split{n.slice(p.a, p.b), in.byteLevel})
		}
	}
}
