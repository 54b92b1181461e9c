package guide

import (
	"fmt"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// An NFA over bytes (Thompson's construction). Regular expressions match
// text, but a token is a byte string that may end inside a character, so
// every rune class is lowered to the UTF-8 byte sequences that spell it.
type nfa struct {
	nodes []node
	start int32
	live  []bool // see markLive
}

type nodeKind uint8

const (
	nByte  nodeKind = iota // consume one byte in [lo, hi], go to out
	nSplit                 // go to out and out1 without consuming
	nMatch                 // accept
)

type node struct {
	kind      nodeKind
	lo, hi    byte
	out, out1 int32
}

// builder compiles backwards: compile(re, next) returns the entry of a
// fragment whose every exit leads to next, so no patch lists are needed.
type builder struct {
	nodes    []node
	maxNodes int
}

func (b *builder) add(n node) (int32, error) {
	if len(b.nodes) >= b.maxNodes {
		return 0, fmt.Errorf("%w: the automaton needs more than %d states", ErrTooLarge, b.maxNodes)
	}
	b.nodes = append(b.nodes, n)
	return int32(len(b.nodes) - 1), nil
}

func (b *builder) split(out, out1 int32) (int32, error) {
	return b.add(node{kind: nSplit, out: out, out1: out1})
}

// compileRegexp builds the NFA of a full match of re.
func compileRegexp(re *syntax.Regexp, maxNodes int) (*nfa, error) {
	re = stripAnchors(re)
	b := &builder{maxNodes: maxNodes}
	match, err := b.add(node{kind: nMatch})
	if err != nil {
		return nil, err
	}
	start, err := b.compile(re, match)
	if err != nil {
		return nil, err
	}
	n := &nfa{nodes: b.nodes, start: start}
	n.markLive()
	return n, nil
}

// stripAnchors drops ^ and $ at the ends of a pattern: a constraint is
// always a full match, so they say nothing. Anchors anywhere else are
// refused by compile.
func stripAnchors(re *syntax.Regexp) *syntax.Regexp {
	isBegin := func(r *syntax.Regexp) bool { return r.Op == syntax.OpBeginText || r.Op == syntax.OpBeginLine }
	isEnd := func(r *syntax.Regexp) bool { return r.Op == syntax.OpEndText || r.Op == syntax.OpEndLine }
	switch {
	case isBegin(re) || isEnd(re):
		return &syntax.Regexp{Op: syntax.OpEmptyMatch}
	case re.Op == syntax.OpAlternate || re.Op == syntax.OpCapture:
		// ^a|b$ is a full match of a or b, as is (^a$).
		cp := *re
		cp.Sub = make([]*syntax.Regexp, len(re.Sub))
		for i, s := range re.Sub {
			cp.Sub[i] = stripAnchors(s)
		}
		return &cp
	case re.Op != syntax.OpConcat:
		return re
	}
	subs := re.Sub
	for len(subs) > 0 && isBegin(subs[0]) {
		subs = subs[1:]
	}
	for len(subs) > 0 && isEnd(subs[len(subs)-1]) {
		subs = subs[:len(subs)-1]
	}
	return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs, Flags: re.Flags}
}

func (b *builder) compile(re *syntax.Regexp, next int32) (int32, error) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return next, nil
	case syntax.OpNoMatch:
		// A byte range that no byte is in: the fragment never exits.
		return b.add(node{kind: nByte, lo: 1, hi: 0, out: next})
	case syntax.OpLiteral:
		for i := len(re.Rune) - 1; i >= 0; i-- {
			r := re.Rune[i]
			var err error
			if re.Flags&syntax.FoldCase != 0 {
				next, err = b.runes(foldRanges(r), next)
			} else {
				next, err = b.runes([]rune{r, r}, next)
			}
			if err != nil {
				return 0, err
			}
		}
		return next, nil
	case syntax.OpCharClass:
		return b.runes(re.Rune, next)
	case syntax.OpAnyCharNotNL:
		return b.runes([]rune{0, '\n' - 1, '\n' + 1, unicode.MaxRune}, next)
	case syntax.OpAnyChar:
		return b.runes([]rune{0, unicode.MaxRune}, next)
	case syntax.OpCapture:
		return b.compile(re.Sub[0], next)
	case syntax.OpConcat:
		for i := len(re.Sub) - 1; i >= 0; i-- {
			var err error
			if next, err = b.compile(re.Sub[i], next); err != nil {
				return 0, err
			}
		}
		return next, nil
	case syntax.OpAlternate:
		return b.alternate(re.Sub, next)
	case syntax.OpQuest:
		body, err := b.compile(re.Sub[0], next)
		if err != nil {
			return 0, err
		}
		return b.split(body, next)
	case syntax.OpStar, syntax.OpPlus:
		// One loop node back to the body: x* enters at the loop (it may
		// skip the body), x+ at the body.
		loop, err := b.split(-1, next)
		if err != nil {
			return 0, err
		}
		body, err := b.compile(re.Sub[0], loop)
		if err != nil {
			return 0, err
		}
		b.nodes[loop].out = body
		if re.Op == syntax.OpPlus {
			return body, nil
		}
		return loop, nil
	case syntax.OpRepeat:
		return b.repeat(re, next)
	}
	return 0, fmt.Errorf("%w: %s (anchors and word boundaries are supported only at the ends of a pattern)", ErrUnsupported, re)
}

func (b *builder) alternate(subs []*syntax.Regexp, next int32) (int32, error) {
	entry, err := b.compile(subs[len(subs)-1], next)
	if err != nil {
		return 0, err
	}
	for i := len(subs) - 2; i >= 0; i-- {
		alt, err := b.compile(subs[i], next)
		if err != nil {
			return 0, err
		}
		if entry, err = b.split(alt, entry); err != nil {
			return 0, err
		}
	}
	return entry, nil
}

// repeat expands x{min,max} into min copies followed by max-min optional
// ones (or a star when max is unbounded); the node budget bounds it.
func (b *builder) repeat(re *syntax.Regexp, next int32) (int32, error) {
	sub := re.Sub[0]
	var err error
	if re.Max < 0 {
		star := &syntax.Regexp{Op: syntax.OpStar, Sub: []*syntax.Regexp{sub}}
		if next, err = b.compile(star, next); err != nil {
			return 0, err
		}
	} else {
		// Nested optionals, (x(x(x)?)?)?, so that an accepting path never
		// has to choose among equivalent positions.
		for range re.Max - re.Min {
			body, err := b.compile(sub, next)
			if err != nil {
				return 0, err
			}
			if next, err = b.split(body, next); err != nil {
				return 0, err
			}
		}
	}
	for range re.Min {
		if next, err = b.compile(sub, next); err != nil {
			return 0, err
		}
	}
	return next, nil
}

// foldRanges is the class of runes equal to r under simple case folding.
func foldRanges(r rune) []rune {
	out := []rune{r, r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		out = append(out, f, f)
	}
	return out
}

// runes compiles a rune class (sorted or not, as pairs lo, hi) into the
// alternation of the byte sequences that encode its members.
func (b *builder) runes(ranges []rune, next int32) (int32, error) {
	var seqs [][]byteRange
	for i := 0; i+1 < len(ranges); i += 2 {
		utf8Sequences(ranges[i], ranges[i+1], func(s []byteRange) {
			seqs = append(seqs, append([]byteRange(nil), s...))
		})
	}
	if len(seqs) == 0 {
		return b.add(node{kind: nByte, lo: 1, hi: 0, out: next})
	}
	entry := int32(-1)
	for i := len(seqs) - 1; i >= 0; i-- {
		at := next
		for j := len(seqs[i]) - 1; j >= 0; j-- {
			var err error
			if at, err = b.add(node{kind: nByte, lo: seqs[i][j].lo, hi: seqs[i][j].hi, out: at}); err != nil {
				return 0, err
			}
		}
		if entry < 0 {
			entry = at
			continue
		}
		var err error
		if entry, err = b.split(at, entry); err != nil {
			return 0, err
		}
	}
	return entry, nil
}

type byteRange struct{ lo, hi byte }

// utf8Sequences calls emit with each sequence of byte ranges that together
// encode exactly the runes in [lo, hi] (surrogates excluded), splitting the
// range until every position is an independent byte range.
func utf8Sequences(lo, hi rune, emit func([]byteRange)) {
	hi = min(hi, unicode.MaxRune)
	if lo > hi {
		return
	}
	// Surrogate halves have no UTF-8 encoding.
	if lo < 0xD800 && hi > 0xDFFF {
		utf8Sequences(lo, 0xD7FF, emit)
		utf8Sequences(0xE000, hi, emit)
		return
	}
	if lo >= 0xD800 && hi <= 0xDFFF {
		return
	}
	lo, hi = clampSurrogate(lo, hi)
	// Split where the encoded length changes.
	for _, edge := range []rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= edge && hi > edge {
			utf8Sequences(lo, edge, emit)
			utf8Sequences(edge+1, hi, emit)
			return
		}
	}
	if hi < utf8.RuneSelf {
		emit([]byteRange{{byte(lo), byte(hi)}})
		return
	}
	// Split until, for each continuation position, the range covers either
	// a single prefix or all 64 continuation values.
	for i := 1; i < 4; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Sequences(lo, lo|m, emit)
				utf8Sequences((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Sequences(lo, (hi&^m)-1, emit)
				utf8Sequences(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, z [4]byte
	n := utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(z[:], hi)
	seq := make([]byteRange, n)
	for i := range n {
		seq[i] = byteRange{a[i], z[i]}
	}
	emit(seq)
}

func clampSurrogate(lo, hi rune) (rune, rune) {
	if lo >= 0xD800 && lo <= 0xDFFF {
		lo = 0xE000
	}
	if hi >= 0xD800 && hi <= 0xDFFF {
		hi = 0xD7FF
	}
	return lo, hi
}
