package tokenizer

import (
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// unicodeNormalizer applies NFC/NFD/NFKC/NFKD one normalization segment at
// a time, aligning output characters to input ones as HF does.
//
// HF (through the unicode-normalization-alignments crate) gives each output
// character a change: a decomposition's first piece 0 and each further
// piece +1, carried through canonical reordering, and a composition the sum
// of its two parts' changes minus one. Walking the input in order, a
// character with change c <= 0 takes the next input character's alignment
// and consumes 1-c of them; one with c > 0 is inserted and takes the
// alignment of the last input character consumed. changes replays that.
type unicodeNormalizer struct{ f norm.Form }

func (u unicodeNormalizer) normalize(n nstr) nstr {
	if u.f.IsNormalString(n.s) {
		return n
	}
	al := n.alignments()
	b := builder{align: make([]span, 0, len(al))}
	var prev span
	for i := 0; i < len(n.s); {
		j := i + u.f.NextBoundaryInString(n.s[i:], true)
		if j <= i {
			j = len(n.s)
		}
		seg := n.s[i:j]
		out := u.f.String(seg)
		var starts []int
		for k := range seg {
			starts = append(starts, i+k)
		}
		changes := u.changes(seg)
		if len(changes) != utf8.RuneCountInString(out) {
			changes = nil // not expected; fall back to position order
		}
		next, k := 0, 0
		for _, r := range out {
			a := al[starts[min(k, len(starts)-1)]]
			switch {
			case changes == nil:
			case changes[k] > 0:
				if next > 0 || i > 0 {
					a = prev
				}
			default:
				a = al[starts[min(next, len(starts)-1)]]
				next += 1 - changes[k]
				prev = al[starts[min(next, len(starts))-1]]
			}
			b.addRune(r, a)
			k++
		}
		i = j
	}
	return b.done()
}

type normPiece struct {
	r      rune
	ccc    uint8
	change int
}

// changes returns HF's change for each character of u's output for seg.
func (u unicodeNormalizer) changes(seg string) []int {
	decomp, compose := norm.NFD, false
	switch u.f {
	case norm.NFKD, norm.NFKC:
		decomp = norm.NFKD
	}
	if u.f == norm.NFC || u.f == norm.NFKC {
		compose = true
	}
	var ps []normPiece
	for _, r := range seg {
		for k, d := range decompose(decomp, r) {
			p := normPiece{r: d, ccc: decomp.PropertiesString(string(d)).CCC()}
			if k > 0 {
				p.change = 1
			}
			ps = append(ps, p)
		}
	}
	// Canonical ordering: stable sort of each run of non-starters by ccc.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].ccc != 0 && ps[j-1].ccc > ps[j].ccc; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	if compose {
		ps = canonicalCompose(ps)
	}
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.change
	}
	return out
}

// canonicalCompose is Unicode's canonical composition algorithm over
// decomposed, ordered pieces.
func canonicalCompose(ps []normPiece) []normPiece {
	var out []normPiece
	starter := -1
	for _, p := range ps {
		if starter >= 0 {
			last := out[len(out)-1]
			adjacent := len(out)-1 == starter
			if adjacent || (last.ccc != 0 && last.ccc < p.ccc) {
				if c, ok := composePair(out[starter].r, p.r); ok {
					out[starter].r = c
					out[starter].change += p.change - 1
					continue
				}
			}
		}
		if p.ccc == 0 {
			starter = len(out)
		}
		out = append(out, p)
	}
	return out
}

// composePair is the primary composite of a and b, if there is one.
func composePair(a, b rune) (rune, bool) {
	s := norm.NFC.String(string(a) + string(b))
	r, size := utf8.DecodeRuneInString(s)
	return r, size == len(s) && r != a
}

// decompose is r's full decomposition under f (NFD or NFKD), with Hangul
// syllables decomposed algorithmically (x/text keeps no table for them).
func decompose(f norm.Form, r rune) []rune {
	const sBase, lBase, vBase, tBase, tCount, nCount, sCount = 0xAC00, 0x1100, 0x1161, 0x11A7, 28, 588, 11172
	if s := r - sBase; s >= 0 && s < sCount {
		out := []rune{lBase + s/nCount, vBase + (s%nCount)/tCount}
		if t := s % tCount; t != 0 {
			out = append(out, tBase+t)
		}
		return out
	}
	d := f.PropertiesString(string(r)).Decomposition()
	if d == nil {
		return []rune{r}
	}
	return []rune(string(d))
}
