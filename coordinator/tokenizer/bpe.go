package tokenizer

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"strings"
	"sync/atomic"
	"unicode/utf8"
)

// mtok is a token produced by a model: its id, its byte range within the
// word the model was given, and its value when that is not the vocab string
// of id (Unigram's unknown pieces); "" means the vocab string.
type mtok struct {
	id    int32
	start int32
	end   int32
	value string
}

// model turns one pre-token into tokens. byteLevel words are raw bytes to be
// read through the GPT-2 byte alphabet; offsets are then in those bytes.
type model interface {
	tokenize(word string, byteLevel bool, dst []mtok) ([]mtok, error)
	vocab() map[string]int32
	idToToken(id int32) (string, bool)
}

var modelBuilders = map[string]func(raw json.RawMessage) (model, error){}

func init() {
	modelBuilders["BPE"] = newBPE
}

// vocabTable is a token<->id table shared by the models.
type vocabTable struct {
	ids    map[string]int32
	tokens []string // by id; "" with has[id] false for holes
	has    []bool
}

func newVocabTable(v map[string]int32) (vocabTable, error) {
	if len(v) == 0 {
		return vocabTable{}, fmt.Errorf("%w: model vocab is empty or absent", ErrMissingVocab)
	}
	maxID := int32(-1)
	for tok, id := range v {
		if id < 0 {
			return vocabTable{}, fmt.Errorf("%w: vocab token %q has negative id %d", ErrMalformed, tok, id)
		}
		maxID = max(maxID, id)
	}
	if int(maxID) >= 2*len(v)+1024 {
		return vocabTable{}, fmt.Errorf("%w: vocab ids are sparse (max id %d for %d tokens)", ErrMalformed, maxID, len(v))
	}
	t := vocabTable{ids: v, tokens: make([]string, maxID+1), has: make([]bool, maxID+1)}
	for tok, id := range v {
		if t.has[id] {
			return vocabTable{}, fmt.Errorf("%w: vocab id %d is used by %q and %q", ErrMalformed, id, t.tokens[id], tok)
		}
		t.tokens[id], t.has[id] = tok, true
	}
	return t, nil
}

func (t *vocabTable) vocab() map[string]int32 { return t.ids }

func (t *vocabTable) idToToken(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.tokens) || !t.has[id] {
		return "", false
	}
	return t.tokens[id], true
}

// bpe is HF's BPE model.
type bpe struct {
	vocabTable
	merges       mergeTable
	unk          int32 // -1: none
	unkToken     string
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteTok      [256]int32 // "<0xNN>" ids for byte fallback, -1 if absent
	blTok        [256]int32 // id of the byte-alphabet character of each byte, -1 if absent
	// blPair has bit x<<8|y set when the byte-alphabet tokens of bytes x
	// and y have a merge; a word with no such pair is its byte tokens.
	blPair [256 * 256 / 64]uint64

	cache wordCache
}

// wordCache is a lock-free direct-mapped cache word -> tokens: a slot holds
// the last word hashed to it, so the cache is bounded and keeps recent
// words. Readers do one atomic load; concurrent Encodes never block.
type wordCache struct {
	seed  maphash.Seed
	slots []atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	word string
	kind uint8 // cacheChars, or cacheBytes/cacheBytesBL by the word's byteLevel
	n    int
	// nchars is the word's length in characters (cacheChars only).
	nchars int
	toks   [6]btok // inline: most words are a few tokens
	more   []btok
}

// Kinds of cache entries: token offsets in bytes of a word that is
// byte-level or not (tokenize), or in characters of a byte-level word
// (appendWordChars).
const (
	cacheBytes = iota
	cacheBytesBL
	cacheChars
)

func (e *cacheEntry) tokens() []btok {
	if e.more != nil {
		return e.more
	}
	return e.toks[:e.n]
}

// btok is a pointer-free cached token, so the cache costs the GC little.
type btok struct{ id, start, end int32 }

const cacheSlots = 1 << 15

// Longer words are not cached: they rarely repeat, and a miss costs a
// lookup, an allocation and an eviction. The GPT-2 split makes a whole CJK
// clause one word, so words starting with a CJK or Hangul character (lead
// bytes E3-ED) get a shorter limit.
const (
	cacheWordMax = 64
	cacheCJKMax  = 12
)

func newWordCache() wordCache {
	return wordCache{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[cacheEntry], cacheSlots)}
}

func (c *wordCache) slot(word string) *atomic.Pointer[cacheEntry] {
	return &c.slots[maphash.String(c.seed, word)&(cacheSlots-1)]
}

// cacheable reports whether word goes through the cache.
func cacheable(word string) bool {
	return len(word) <= cacheWordMax && (len(word) <= cacheCJKMax || word[0] < 0xE3 || word[0] > 0xED)
}

// newCacheEntry copies toks into a new entry.
func newCacheEntry(word string, kind uint8, nchars int, toks []btok) *cacheEntry {
	e := &cacheEntry{word: strings.Clone(word), kind: kind, n: len(toks), nchars: nchars}
	if e.n > len(e.toks) {
		e.more = make([]btok, e.n)
	}
	copy(e.tokens(), toks)
	return e
}

func newBPE(raw json.RawMessage) (model, error) {
	var c struct {
		Vocab        map[string]int32 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		UnkToken     *string          `json:"unk_token"`
		Prefix       *string          `json:"continuing_subword_prefix"`
		Suffix       *string          `json:"end_of_word_suffix"`
		FuseUnk      bool             `json:"fuse_unk"`
		ByteFallback bool             `json:"byte_fallback"`
		IgnoreMerges bool             `json:"ignore_merges"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: BPE model: %v", ErrMalformed, err)
	}
	vt, err := newVocabTable(c.Vocab)
	if err != nil {
		return nil, fmt.Errorf("BPE model: %w", err)
	}
	m := &bpe{vocabTable: vt, unk: -1, fuseUnk: c.FuseUnk, byteFallback: c.ByteFallback, ignoreMerges: c.IgnoreMerges}
	if c.Prefix != nil {
		m.prefix = *c.Prefix
	}
	if c.Suffix != nil {
		m.suffix = *c.Suffix
	}
	if c.UnkToken != nil {
		id, ok := vt.ids[*c.UnkToken]
		if !ok {
			return nil, fmt.Errorf("%w: BPE unk_token %q is not in the vocab", ErrMissingVocab, *c.UnkToken)
		}
		m.unk, m.unkToken = id, *c.UnkToken
	}
	pairs, err := parseMerges(c.Merges)
	if err != nil {
		return nil, err
	}
	m.merges = newMergeTable(len(pairs))
	for i, p := range pairs {
		a, ok := vt.ids[p[0]]
		if !ok {
			return nil, fmt.Errorf("%w: merge %d (%q %q): %q is not in the vocab", ErrBadMerges, i, p[0], p[1], p[0])
		}
		b, ok := vt.ids[p[1]]
		if !ok {
			return nil, fmt.Errorf("%w: merge %d (%q %q): %q is not in the vocab", ErrBadMerges, i, p[0], p[1], p[1])
		}
		right := p[1]
		if m.prefix != "" {
			right = strings.TrimPrefix(right, m.prefix)
		}
		id, ok := vt.ids[p[0]+right]
		if !ok {
			return nil, fmt.Errorf("%w: merge %d (%q %q): result %q is not in the vocab", ErrBadMerges, i, p[0], p[1], p[0]+right)
		}
		m.merges.put(a, b, int32(i), id)
	}
	for b := range 256 {
		m.byteTok[b], m.blTok[b] = -1, -1
		if id, ok := vt.ids[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteTok[b] = id
		}
		if id, ok := vt.ids[byteChar[b]]; ok {
			m.blTok[b] = id
		}
	}
	byteOf := make(map[int32]int, 256)
	for b, id := range m.blTok {
		if id >= 0 {
			byteOf[id] = b
		}
	}
	for _, k := range m.merges.keys {
		if k == emptyKey {
			continue
		}
		x, okx := byteOf[int32(k>>32)]
		y, oky := byteOf[int32(uint32(k))]
		if okx && oky {
			m.blPair[(x<<8|y)>>6] |= 1 << ((x<<8 | y) & 63)
		}
	}
	m.cache = newWordCache()
	return m, nil
}

// parseMerges accepts both forms HF writes: ["a b", ...] and [["a","b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: merges must be a list: %v", ErrBadMerges, err)
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if err := json.Unmarshal(it, &s); err == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" || strings.Contains(b, " ") {
				return nil, fmt.Errorf("%w: merge %d %q is not two space-separated tokens", ErrBadMerges, i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("%w: merge %d %s is not a pair of tokens", ErrBadMerges, i, it)
		}
		out[i] = [2]string{pair[0], pair[1]}
	}
	return out, nil
}

// mergeTable is an open-addressing hash map (a, b) -> (rank, new id); it is
// the hot lookup of BPE and several times faster than a Go map here.
type mergeTable struct {
	keys  []uint64
	vals  [][2]int32
	shift uint
}

const emptyKey = ^uint64(0)

func newMergeTable(n int) mergeTable {
	size, shift := 16, uint(60)
	for size < 2*n {
		size *= 2
		shift--
	}
	t := mergeTable{keys: make([]uint64, size), vals: make([][2]int32, size), shift: shift}
	for i := range t.keys {
		t.keys[i] = emptyKey
	}
	return t
}

func (t *mergeTable) slot(k uint64) int { return int((k * 0x9E3779B97F4A7C15) >> t.shift) }

func (t *mergeTable) put(a, b, rank, id int32) {
	k := uint64(uint32(a))<<32 | uint64(uint32(b))
	mask := len(t.keys) - 1
	for i := t.slot(k); ; i = (i + 1) & mask {
		if t.keys[i] == k {
			return // HF keeps the first (lowest rank) merge of a pair
		}
		if t.keys[i] == emptyKey {
			t.keys[i], t.vals[i] = k, [2]int32{rank, id}
			return
		}
	}
}

func (t *mergeTable) get(a, b int32) (rank, id int32, ok bool) {
	k := uint64(uint32(a))<<32 | uint64(uint32(b))
	mask := len(t.keys) - 1
	for i := t.slot(k); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			return t.vals[i][0], t.vals[i][1], true
		case emptyKey:
			return 0, 0, false
		}
	}
}

// symbol is one node of the word being merged (a linked list over a slice).
type symbol struct {
	id         int32
	prev, next int32
	start, end int32
}

func (m *bpe) tokenize(word string, byteLevel bool, dst []mtok) ([]mtok, error) {
	if !cacheable(word) {
		return m.encodeWord(word, byteLevel, dst)
	}
	kind := uint8(cacheBytes)
	if byteLevel {
		kind = cacheBytesBL
	}
	slot := m.cache.slot(word)
	if e := slot.Load(); e != nil && e.word == word && e.kind == kind {
		for _, t := range e.tokens() {
			dst = append(dst, mtok{id: t.id, start: t.start, end: t.end})
		}
		return dst, nil
	}
	n0 := len(dst)
	dst, err := m.encodeWord(word, byteLevel, dst)
	if err == nil {
		var buf [16]btok
		toks := buf[:0]
		for _, t := range dst[n0:] {
			toks = append(toks, btok{t.id, t.start, t.end})
		}
		slot.Store(newCacheEntry(word, kind, 0, toks))
	}
	return dst, err
}

// appendWordChars encodes a byte-level word (BPE without
// continuing_subword_prefix or end_of_word_suffix) and appends its ids and
// its offsets in characters, plus base, as Encode's fast path reports them.
// It returns the word's length in characters.
func (m *bpe) appendWordChars(word string, base int, ids []int32, offs [][2]int) ([]int32, [][2]int, int, error) {
	var slot *atomic.Pointer[cacheEntry]
	if cacheable(word) {
		slot = m.cache.slot(word)
		if e := slot.Load(); e != nil && e.word == word && e.kind == cacheChars {
			for _, t := range e.tokens() {
				ids = append(ids, t.id)
				offs = appendPair(offs, base+int(t.start), base+int(t.end))
			}
			return ids, offs, e.nchars, nil
		}
	}
	n0 := len(ids)
	nchars := 0
	if m.bytesOnly(word) {
		// Each byte token spans the character its byte belongs to.
		c := -1
		for k := 0; k < len(word); k++ {
			if utf8.RuneStart(word[k]) {
				c++
			}
			ids = append(ids, m.blTok[word[k]])
			offs = appendPair(offs, base+c, base+c+1)
		}
		nchars = c + 1
	} else {
		var buf [32]mtok
		toks, err := m.encodeWord(word, true, buf[:0])
		if err != nil {
			return ids, offs, 0, err
		}
		p, cp := 0, 0 // cp is the number of characters in word[:p]
		for _, t := range toks {
			a, b := runeRange(word, int(t.start), int(t.end))
			for ; p < a; p++ {
				if utf8.RuneStart(word[p]) {
					cp++
				}
			}
			ce := cp
			for q := a; q < b; q++ {
				if utf8.RuneStart(word[q]) {
					ce++
				}
			}
			ids = append(ids, t.id)
			offs = appendPair(offs, base+cp, base+ce)
		}
		nchars = utf8.RuneCountInString(word)
	}
	if slot != nil {
		var buf [16]btok
		toks := buf[:0]
		for k, id := range ids[n0:] {
			o := offs[n0+k]
			toks = append(toks, btok{id, int32(o[0] - base), int32(o[1] - base)})
		}
		slot.Store(newCacheEntry(word, cacheChars, nchars, toks))
	}
	return ids, offs, nchars, nil
}

// appendPair appends {a, b} to s. It is append(s, [2]int{a, b}) without
// the composite literal, which the compiler builds on the stack with two
// 8-byte stores and reloads with one 16-byte load: a store-forwarding stall
// that made the append about 6 times slower (10 ns against 1.7 ns).
func appendPair(s [][2]int, a, b int) [][2]int {
	n := len(s)
	if n < cap(s) {
		s = s[:n+1]
	} else {
		s = append(s, [2]int{})
	}
	s[n][0], s[n][1] = a, b
	return s
}

// bytesOnly reports whether the byte-level word encodes to one token per
// byte: every byte has its byte-alphabet token and no adjacent pair merges
// (the common case for CJK text with a small vocab).
func (m *bpe) bytesOnly(word string) bool {
	if m.ignoreMerges || m.prefix != "" || m.suffix != "" {
		return false
	}
	prev := -1
	for k := 0; k < len(word); k++ {
		c := int(word[k])
		if m.blTok[c] < 0 {
			return false
		}
		if prev >= 0 {
			if x := prev<<8 | c; m.blPair[x>>6]&(1<<(x&63)) != 0 {
				return false
			}
		}
		prev = c
	}
	return true
}

func (m *bpe) encodeWord(word string, byteLevel bool, dst []mtok) ([]mtok, error) {
	if m.ignoreMerges {
		w := word
		if byteLevel {
			w = toByteAlphabet(word)
		}
		if id, ok := m.ids[w]; ok {
			return append(dst, mtok{id, 0, int32(len(word)), ""}), nil
		}
	}
	var buf [64]symbol
	syms, err := m.initialSymbols(word, byteLevel, buf[:0])
	if err != nil {
		return dst, err
	}
	syms = m.mergeAll(syms)
	for i := 0; i >= 0 && i < len(syms); i = int(syms[i].next) {
		s := syms[i]
		dst = append(dst, mtok{s.id, s.start, s.end, ""})
	}
	return dst, nil
}

// initialSymbols is HF's merge_word up to the merges: one symbol per
// character (per byte for byte-level words), with continuing_subword_prefix,
// end_of_word_suffix, byte fallback and (fused) unknowns.
func (m *bpe) initialSymbols(word string, byteLevel bool, syms []symbol) ([]symbol, error) {
	unkStart, unkEnd := -1, -1
	add := func(id int32, a, b int) {
		syms = append(syms, symbol{id: id, prev: int32(len(syms) - 1), next: int32(len(syms) + 1), start: int32(a), end: int32(b)})
	}
	flushUnk := func() {
		if unkStart >= 0 {
			add(m.unk, unkStart, unkEnd)
			unkStart = -1
		}
	}
	simple := m.prefix == "" && m.suffix == ""
	for i := 0; i < len(word); {
		var unit string
		size := 1
		if byteLevel {
			unit = byteChar[word[i]]
		} else {
			_, size = decodeRune(word, i)
			unit = word[i : i+size]
		}
		first, last := i == 0, i+size == len(word)
		id, ok := int32(-1), false
		if simple && byteLevel {
			id = m.blTok[word[i]]
			ok = id >= 0
		} else {
			s := unit
			if !first && m.prefix != "" {
				s = m.prefix + s
			}
			if last && m.suffix != "" {
				s += m.suffix
			}
			id, ok = m.ids[s]
			unit = s
		}
		switch {
		case ok:
			flushUnk()
			add(id, i, i+size)
		case m.byteFallback && m.hasByteTokens(unit):
			flushUnk()
			for k := 0; k < len(unit); k++ {
				a, b := i+k, i+k+1
				if byteLevel || b > i+size {
					a, b = i, i+size
				}
				add(m.byteTok[unit[k]], a, b)
			}
		case m.unk >= 0:
			if unkStart >= 0 && m.fuseUnk {
				unkEnd = i + size
			} else {
				flushUnk()
				unkStart, unkEnd = i, i+size
			}
		}
		i += size
	}
	flushUnk()
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms, nil
}

func (m *bpe) hasByteTokens(s string) bool {
	for k := 0; k < len(s); k++ {
		if m.byteTok[s[k]] < 0 {
			return false
		}
	}
	return true
}

// mergeAll is HF's Word::merge_all: repeatedly merge the pair with the lowest
// rank, leftmost first, using a priority queue with lazy invalidation.
func (m *bpe) mergeAll(syms []symbol) []symbol {
	if len(syms) < 2 {
		return syms
	}
	var hbuf [64]mergeItem
	h := hbuf[:0]
	for i := 0; i+1 < len(syms); i++ {
		if r, id, ok := m.merges.get(syms[i].id, syms[i+1].id); ok {
			h = heapPush(h, mergeItem{rank: r, pos: int32(i), id: id})
		}
	}
	for len(h) > 0 {
		var top mergeItem
		h, top = heapPop(h)
		cur := &syms[top.pos]
		if cur.id == removedSym || cur.next < 0 {
			continue
		}
		nextPos := cur.next
		right := syms[nextPos]
		if _, id, ok := m.merges.get(cur.id, right.id); !ok || id != top.id {
			continue
		}
		cur.id, cur.end, cur.next = top.id, right.end, right.next
		syms[nextPos].id = removedSym
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			p := syms[cur.prev]
			if r, id, ok := m.merges.get(p.id, cur.id); ok {
				h = heapPush(h, mergeItem{rank: r, pos: cur.prev, id: id})
			}
		}
		if cur.next >= 0 {
			if r, id, ok := m.merges.get(cur.id, syms[cur.next].id); ok {
				h = heapPush(h, mergeItem{rank: r, pos: top.pos, id: id})
			}
		}
	}
	return syms
}

const removedSym = -2 // id of a symbol merged into its left neighbour

type mergeItem struct {
	rank, pos, id int32
}

func (a mergeItem) less(b mergeItem) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// heapPush and heapPop keep a min-heap by (rank, pos); plain functions so
// that a small heap stays on the caller's stack.
func heapPush(s []mergeItem, x mergeItem) []mergeItem {
	s = append(s, x)
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
	return s
}

func heapPop(s []mergeItem) ([]mergeItem, mergeItem) {
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].less(s[m]) {
			m = l
		}
		if r < n && s[r].less(s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return s, top
}
