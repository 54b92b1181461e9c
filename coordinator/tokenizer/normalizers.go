package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of text, keeping its alignment to the input.
type normalizer interface {
	normalize(n nstr) nstr
}

// normalizerBuilders maps a tokenizer.json normalizer "type" to its
// constructor. Filled in init.
var normalizerBuilders = map[string]func(raw json.RawMessage) (normalizer, error){}

func init() {
	normalizerBuilders["BertNormalizer"] = newBertNormalizer
	normalizerBuilders["Sequence"] = func(raw json.RawMessage) (normalizer, error) {
		seq, err := buildList(raw, "normalizers", buildNormalizer)
		return seqNormalizer(seq), err
	}
	normalizerBuilders["Prepend"] = func(raw json.RawMessage) (normalizer, error) {
		var c struct {
			Prepend string `json:"prepend"`
		}
		err := json.Unmarshal(raw, &c)
		return prependNormalizer(c.Prepend), err
	}
	normalizerBuilders["Replace"] = func(raw json.RawMessage) (normalizer, error) {
		p, content, err := parseReplace(raw)
		if err != nil {
			return nil, err
		}
		return replaceNormalizer{p, content}, nil
	}
	normalizerBuilders["Lowercase"] = func(json.RawMessage) (normalizer, error) { return lowercaseNormalizer{}, nil }
	normalizerBuilders["StripAccents"] = func(json.RawMessage) (normalizer, error) { return stripAccentsNormalizer{}, nil }
	normalizerBuilders["Strip"] = func(raw json.RawMessage) (normalizer, error) {
		c := struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}{true, true}
		err := json.Unmarshal(raw, &c)
		return stripNormalizer{c.Left, c.Right}, err
	}
	for name, f := range map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD} {
		normalizerBuilders[name] = func(json.RawMessage) (normalizer, error) { return unicodeNormalizer{f}, nil }
	}
}

func buildNormalizer(raw json.RawMessage) (normalizer, error) {
	return build(raw, "normalizer", normalizerBuilders)
}

type seqNormalizer []normalizer

func (s seqNormalizer) normalize(n nstr) nstr {
	for _, x := range s {
		n = x.normalize(n)
	}
	return n
}

type prependNormalizer string

func (p prependNormalizer) normalize(n nstr) nstr { return n.prepend(string(p)) }

// pattern is HF's {"String": "..."} or {"Regex": "..."}; scan runs the
// regexes RE2 cannot (see splitScanners).
type pattern struct {
	lit  string
	re   *regexp.Regexp
	scan func(s string, i int) int
}

// regexError tells a regex Go cannot run because RE2 lacks the feature
// (look-around, back-references, possessive repeats: Oniguruma has them)
// from one that is simply invalid.
func regexError(src string, err error) error {
	var se *syntax.Error
	if errors.As(err, &se) {
		switch {
		case se.Code == syntax.ErrInvalidPerlOp, se.Code == syntax.ErrInvalidRepeatOp,
			se.Code == syntax.ErrInvalidEscape && len(se.Expr) == 2 && se.Expr[1] >= '1' && se.Expr[1] <= '9':
			return fmt.Errorf("%w: regex %q (Go's RE2 has no look-around, back-references or possessive repeats): %v", ErrUnsupported, src, err)
		}
	}
	return fmt.Errorf("%w: regex %q is not valid: %v", ErrMalformed, src, err)
}

func parsePattern(raw json.RawMessage) (pattern, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return pattern{}, err
	}
	switch {
	case p.String != nil:
		return pattern{lit: *p.String}, nil
	case p.Regex != nil:
		if scan, ok := splitScanners[*p.Regex]; ok {
			return pattern{scan: scan}, nil
		}
		re, err := regexp.Compile(*p.Regex)
		if err != nil {
			return pattern{}, regexError(*p.Regex, err)
		}
		return pattern{re: re}, nil
	}
	return pattern{}, fmt.Errorf("%w: pattern needs String or Regex", ErrMalformed)
}

// matches returns the non-overlapping match ranges of p in s.
func (p pattern) matches(s string) [][]int {
	if p.scan != nil {
		var out [][]int
		for i := 0; i < len(s); {
			j := p.scan(s, i)
			out = append(out, []int{i, j})
			i = j
		}
		return out
	}
	if p.re != nil {
		var out [][]int
		for _, m := range p.re.FindAllStringIndex(s, -1) {
			if m[1] > m[0] {
				out = append(out, m)
			}
		}
		return out
	}
	if p.lit == "" {
		return nil
	}
	var out [][]int
	for i := 0; ; {
		k := strings.Index(s[i:], p.lit)
		if k < 0 {
			return out
		}
		out = append(out, []int{i + k, i + k + len(p.lit)})
		i += k + len(p.lit)
	}
}

func parseReplace(raw json.RawMessage) (pattern, string, error) {
	var c struct {
		Pattern json.RawMessage `json:"pattern"`
		Content string          `json:"content"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return pattern{}, "", err
	}
	p, err := parsePattern(c.Pattern)
	return p, c.Content, err
}

type replaceNormalizer struct {
	p       pattern
	content string
}

func (r replaceNormalizer) normalize(n nstr) nstr {
	return n.replaceMatches(r.p.matches(n.s), r.content)
}

type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(n nstr) nstr { return n.mapRunes(lowerRune) }

// lowerRune is Rust's char::to_lowercase: the simple mapping, except for
// U+0130, whose lowercase is two characters.
func lowerRune(r rune, out []rune) []rune {
	if r == 'İ' {
		return append(out, 'i', '\u0307')
	}
	return append(out, unicode.ToLower(r))
}

type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(n nstr) nstr {
	return n.mapRunes(func(r rune, out []rune) []rune {
		if !unicode.Is(unicode.Mn, r) {
			out = append(out, r)
		}
		return out
	})
}

type stripNormalizer struct{ left, right bool }

func (s stripNormalizer) normalize(n nstr) nstr {
	a, b := 0, len(n.s)
	if s.left {
		a = len(n.s) - len(strings.TrimLeftFunc(n.s, isWhitespace))
	}
	if s.right {
		b = len(strings.TrimRightFunc(n.s, isWhitespace))
	}
	if b < a {
		b = a
	}
	return n.slice(a, b)
}

// BertNormalizer, as in HF: clean_text, handle_chinese_chars, strip_accents
// (defaults to lowercase when null) and lowercase, in that order.
type bertNormalizer struct {
	cleanText, chinese, stripAccents, lowercase bool
}

func newBertNormalizer(raw json.RawMessage) (normalizer, error) {
	c := struct {
		CleanText    *bool `json:"clean_text"`
		Chinese      *bool `json:"handle_chinese_chars"`
		StripAccents *bool `json:"strip_accents"`
		Lowercase    *bool `json:"lowercase"`
	}{}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	def := func(p *bool, d bool) bool {
		if p == nil {
			return d
		}
		return *p
	}
	b := bertNormalizer{cleanText: def(c.CleanText, true), chinese: def(c.Chinese, true), lowercase: def(c.Lowercase, true)}
	b.stripAccents = def(c.StripAccents, b.lowercase)
	return b, nil
}

func (b bertNormalizer) normalize(n nstr) nstr {
	if b.cleanText {
		n = n.mapRunes(func(r rune, out []rune) []rune {
			switch {
			case r == 0 || r == 0xFFFD || isControl(r):
				return out
			case isWhitespace(r):
				return append(out, ' ')
			}
			return append(out, r)
		})
	}
	if b.chinese {
		n = n.mapRunes(func(r rune, out []rune) []rune {
			if isChineseChar(r) {
				return append(out, ' ', r, ' ')
			}
			return append(out, r)
		})
	}
	if b.stripAccents {
		n = n.mapRunes(func(r rune, out []rune) []rune {
			if r < 0x80 {
				return append(out, r)
			}
			for _, d := range norm.NFD.String(string(r)) {
				if !unicode.Is(unicode.Mn, d) {
					out = append(out, d)
				}
			}
			return out
		})
	}
	if b.lowercase {
		n = n.mapRunes(lowerRune)
	}
	return n
}

// isWhitespace is Rust's char::is_whitespace (the White_Space property).
func isWhitespace(r rune) bool {
	if r < 0x80 {
		return r == ' ' || (r >= '\t' && r <= '\r')
	}
	return unicode.Is(unicode.White_Space, r)
}

// isControl is HF's BERT is_control: category C (Cc, Cf, Cn, Co, Cs) except
// tab, newline and carriage return.
func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	if unicode.Is(unicode.C, r) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z) // Cn: unassigned
}

func isChineseChar(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0x3400 && r <= 0x4DBF, r >= 0x20000 && r <= 0x2A6DF,
		r >= 0x2A700 && r <= 0x2B73F, r >= 0x2B740 && r <= 0x2B81F, r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0xF900 && r <= 0xFAFF, r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

// isBertPunct is HF's is_bert_punc: ASCII punctuation or Unicode P*.
func isBertPunct(r rune) bool {
	if r < 0x80 {
		return (r >= '!' && r <= '/') || (r >= ':' && r <= '@') || (r >= '[' && r <= '`') || (r >= '{' && r <= '~')
	}
	return unicode.IsPunct(r)
}
