package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// span is a byte range [start, end) of the original input text.
type span struct{ start, end int }

// nstr is a piece of normalized text that remembers where each of its bytes
// came from in the original input, like Hugging Face's NormalizedString.
//
// When align is nil the text is an untouched slice of the input starting at
// byte base, so byte i maps to the whole original character containing
// base+i. Otherwise align has one entry per byte of s: the original range of
// the character that produced it. Ranges are absolute offsets into the text
// passed to Encode.
type nstr struct {
	s     string
	align []span
	base  int
}

func identity(s string, base int) nstr { return nstr{s: s, base: base} }

// origRange maps the normalized byte range [a, b) to the original text.
func (n nstr) origRange(a, b int) (int, int) {
	if n.align == nil {
		a, b = runeRange(n.s, a, b)
		return n.base + a, n.base + b
	}
	if a >= b {
		if a < len(n.align) {
			return n.align[a].start, n.align[a].start
		}
		if len(n.align) > 0 {
			e := n.align[len(n.align)-1].end
			return e, e
		}
		return 0, 0
	}
	return n.align[a].start, n.align[b-1].end
}

// runeRange widens the byte range [a, b) of s to whole characters.
func runeRange(s string, a, b int) (int, int) {
	for a > 0 && a < len(s) && !utf8.RuneStart(s[a]) {
		a--
	}
	for b > a && b < len(s) && !utf8.RuneStart(s[b]) {
		b++
	}
	return a, b
}

// origStart is the original offset of the first byte (HF's
// offsets_original().0).
func (n nstr) origStart() int {
	if n.align == nil {
		return n.base
	}
	if len(n.align) == 0 {
		return 0
	}
	return n.align[0].start
}

func (n nstr) slice(a, b int) nstr {
	if n.align == nil {
		return nstr{s: n.s[a:b], base: n.base + a}
	}
	return nstr{s: n.s[a:b], align: n.align[a:b]}
}

// alignments returns the per-byte alignment, materializing it for an
// identity piece.
func (n nstr) alignments() []span {
	if n.align != nil {
		return n.align
	}
	al := make([]span, len(n.s))
	for i, r := range n.s {
		sz := utf8.RuneLen(r) // the text is valid UTF-8 (Encode sanitizes it)
		for k := 0; k < sz && i+k < len(al); k++ {
			al[i+k] = span{n.base + i, n.base + i + sz}
		}
	}
	return al
}

// builder accumulates a new normalized string with its alignment.
type builder struct {
	sb    strings.Builder
	align []span
}

func (b *builder) add(s string, al span) {
	b.sb.WriteString(s)
	for range len(s) {
		b.align = append(b.align, al)
	}
}

func (b *builder) addRune(r rune, al span) {
	var buf [4]byte
	n := utf8.EncodeRune(buf[:], r)
	b.add(string(buf[:n]), al)
}

func (b *builder) done() nstr { return nstr{s: b.sb.String(), align: b.align} }

// mapRunes rewrites each character into zero or more characters; every
// produced character keeps the alignment of the character it came from,
// which is what HF's transform gives for replacements, insertions after a
// character and removals. f appends to out and returns it. When nothing
// changes n is returned as is.
func (n nstr) mapRunes(f func(r rune, out []rune) []rune) nstr {
	var out []rune
	var b *builder
	var al []span
	for i, r := range n.s {
		out = f(r, out[:0])
		if b == nil {
			if len(out) == 1 && out[0] == r {
				continue
			}
			al = n.alignments()
			b = &builder{align: make([]span, 0, len(n.s)+8)}
			b.sb.Grow(len(n.s) + 8)
			b.sb.WriteString(n.s[:i])
			b.align = append(b.align, al[:i]...)
		}
		for _, o := range out {
			b.addRune(o, al[i])
		}
	}
	if b == nil {
		return n
	}
	return b.done()
}

// prepend adds s before the text, aligned to the first character (HF's
// NormalizedString::prepend). An empty text stays empty.
func (n nstr) prepend(s string) nstr {
	if n.s == "" || s == "" {
		return n
	}
	al := n.alignments()
	b := builder{align: make([]span, 0, len(s)+len(al))}
	b.sb.Grow(len(s) + len(n.s))
	b.add(s, al[0])
	b.sb.WriteString(n.s)
	b.align = append(b.align, al...)
	return b.done()
}

// replace substitutes every non-overlapping occurrence of pat with content;
// the new characters take the alignment of the last replaced byte, as HF's
// NormalizedString::replace does.
func (n nstr) replace(pat, content string) nstr {
	if pat == "" || !strings.Contains(n.s, pat) {
		return n
	}
	return n.replaceMatches(pattern{lit: pat}.matches(n.s), content)
}

// replaceMatches replaces the given match ranges with content.
func (n nstr) replaceMatches(matches [][]int, content string) nstr {
	if len(matches) == 0 {
		return n
	}
	al := n.alignments()
	b := builder{align: make([]span, 0, len(al))}
	last := 0
	for _, m := range matches {
		start, end := m[0], m[1]
		if start < last || end <= start {
			continue
		}
		b.sb.WriteString(n.s[last:start])
		b.align = append(b.align, al[last:start]...)
		b.add(content, al[end-1])
		last = end
	}
	b.sb.WriteString(n.s[last:])
	b.align = append(b.align, al[last:]...)
	return b.done()
}
