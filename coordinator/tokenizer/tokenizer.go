package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Errors returned by Load and FromJSON (wrapped with detail; test with
// errors.Is) and by Decode.
var (
	// ErrMalformed: tokenizer.json is not valid JSON or a field has the
	// wrong shape.
	ErrMalformed = errors.New("malformed tokenizer.json")
	// ErrUnknownType: a model, normalizer, pre-tokenizer, post-processor or
	// decoder "type" this package does not implement.
	ErrUnknownType = errors.New("unknown component type")
	// ErrMissingVocab: the model has no vocab, or a token it needs (unk) is
	// not in it.
	ErrMissingVocab = errors.New("missing vocab")
	// ErrBadMerges: a BPE merge is malformed or names tokens not in the vocab.
	ErrBadMerges = errors.New("bad merges")
	// ErrUnsupported: a valid configuration this package cannot reproduce
	// exactly (for example a regex with look-around).
	ErrUnsupported = errors.New("unsupported tokenizer feature")
	// ErrUnknownID: Decode got an id that is neither in the vocab nor an
	// added token.
	ErrUnknownID = errors.New("unknown token id")
	// ErrTooManyTokens: EncodeLimit's text has more tokens than its limit.
	ErrTooManyTokens = errors.New("tokenizer: more tokens than the limit")
)

// Tokenizer encodes and decodes text exactly as Hugging Face tokenizers does
// for the tokenizer.json it was loaded from. It is safe for concurrent use.
type Tokenizer struct {
	added      *addedVocab
	normalizer normalizer
	pre        preTokenizer
	model      model
	post       postProcessor
	decoder    decoder
	byteFB     bool // decoder chain contains ByteFallback (streaming holds byte runs)
	vocabSize  int
	strs       []string // token string by id, added tokens first
	known      []bool   // id is in the vocab or an added token
	special    []bool   // id's string is a special added token
	shadowed   bool     // an added token reuses a model id with other content
	fast       *bpe     // set when Encode can take the byte-level fast path (see encodeFast)
	free       chan *scratch
}

// Encoding is the result of Encode. Offsets are [start, end) in Unicode
// characters (code points) of the input text, as HF's Python API reports
// them; special tokens added by the post-processor have [0, 0].
type Encoding struct {
	IDs     []int32
	Tokens  []string
	Offsets [][2]int
}

// Load reads a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// FromJSON builds a Tokenizer from the contents of a tokenizer.json.
func FromJSON(data []byte) (*Tokenizer, error) {
	var c struct {
		AddedTokens   []addedToken    `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		Model         json.RawMessage `json:"model"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Decoder       json.RawMessage `json:"decoder"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: %w: %v", ErrMalformed, err)
	}
	t := &Tokenizer{free: make(chan *scratch, 8)}
	var err error
	wrap := func(part string, err error) error {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrMissingVocab) &&
			!errors.Is(err, ErrBadMerges) && !errors.Is(err, ErrUnsupported) {
			err = fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return fmt.Errorf("tokenizer: %s: %w", part, err)
	}
	if t.normalizer, err = buildNormalizer(c.Normalizer); err != nil {
		return nil, wrap("normalizer", err)
	}
	if t.pre, err = buildPreTokenizer(c.PreTokenizer); err != nil {
		return nil, wrap("pre_tokenizer", err)
	}
	if t.model, err = buildModel(c.Model); err != nil {
		return nil, wrap("model", err)
	}
	if t.post, err = buildPostProcessor(c.PostProcessor); err != nil {
		return nil, wrap("post_processor", err)
	}
	if t.decoder, err = buildDecoder(c.Decoder); err != nil {
		return nil, wrap("decoder", err)
	}
	if t.added, err = newAddedVocab(c.AddedTokens, t.normalizer); err != nil {
		return nil, wrap("added_tokens", err)
	}
	t.byteFB = hasByteFallback(t.decoder)
	seen := make(map[string]bool, len(t.model.vocab())+len(t.added.tokens))
	for tok := range t.model.vocab() {
		seen[tok] = true
	}
	for _, a := range t.added.tokens {
		seen[a.Content] = true
	}
	t.vocabSize = len(seen)
	maxID := int32(-1)
	for tok := range t.model.vocab() {
		maxID = max(maxID, t.model.vocab()[tok])
	}
	for _, a := range t.added.tokens {
		maxID = max(maxID, a.ID)
	}
	if int(maxID) > 4*len(seen)+1<<16 {
		return nil, fmt.Errorf("tokenizer: added_tokens: %w: id %d is far beyond the vocab (%d tokens)", ErrMalformed, maxID, len(seen))
	}
	t.strs, t.known, t.special = make([]string, maxID+1), make([]bool, maxID+1), make([]bool, maxID+1)
	for tok, id := range t.model.vocab() {
		t.strs[id], t.known[id] = tok, true
	}
	for _, a := range t.added.tokens {
		t.strs[a.ID], t.known[a.ID] = a.Content, true
	}
	for _, a := range t.added.tokens {
		if mt, ok := t.model.idToToken(a.ID); ok && mt != a.Content {
			t.shadowed = true
		}
	}
	for id, tok := range t.strs {
		t.special[id] = t.known[id] && t.added.special[tok]
	}
	internStrings(t.strs)
	t.fast = t.fastModel()
	return t, nil
}

// fastModel returns the model when Encode's fast path gives the same
// result as the general one: no normalizer and no post-processor, a
// ByteLevel pre-tokenizer with the GPT-2 split and no prefix space, a BPE
// model without subword prefix or suffix, and every token's string its
// id's string.
func (t *Tokenizer) fastModel() *bpe {
	m, ok := t.model.(*bpe)
	pre, okPre := t.pre.(byteLevelPre)
	if !ok || !okPre || t.normalizer != nil || t.post != nil || pre.addPrefixSpace || !pre.useRegex ||
		m.prefix != "" || m.suffix != "" || t.shadowed {
		return nil
	}
	for _, a := range t.added.tokens {
		if t.strs[a.ID] != a.Content {
			return nil
		}
	}
	return m
}

// internStrings makes the strings of strs share one backing array. Encode
// copies them into every Encoding's Tokens, and the garbage collector then
// marks one object instead of one per vocab string.
func internStrings(strs []string) {
	n := 0
	for _, s := range strs {
		n += len(s)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, s := range strs {
		sb.WriteString(s)
	}
	all := sb.String()
	for i, s := range strs {
		strs[i], all = all[:len(s)], all[len(s):]
	}
}

func hasByteFallback(d decoder) bool {
	switch d := d.(type) {
	case byteFallbackDec:
		return true
	case seqDec:
		for _, x := range d {
			if hasByteFallback(x) {
				return true
			}
		}
	}
	return false
}

// build dispatches on the "type" field of a component; JSON null gives nil.
func build[T any](raw json.RawMessage, what string, builders map[string]func(json.RawMessage) (T, error)) (T, error) {
	var zero T
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return zero, nil
	}
	var h struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return zero, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	f, ok := builders[h.Type]
	if !ok {
		if h.Type == "" {
			return zero, fmt.Errorf("%w: %s has no \"type\"", ErrMalformed, what)
		}
		return zero, fmt.Errorf("%w: %s type %q", ErrUnknownType, what, h.Type)
	}
	v, err := f(raw)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", h.Type, what, err)
	}
	return v, nil
}

// buildList builds the components listed under field (a Sequence's
// members), dropping nulls.
func buildList[T any](raw json.RawMessage, field string, one func(json.RawMessage) (T, error)) ([]T, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	var items []json.RawMessage
	if err := json.Unmarshal(c[field], &items); err != nil {
		return nil, fmt.Errorf("%w: %q must be a list", ErrMalformed, field)
	}
	var out []T
	for i, r := range items {
		v, err := one(r)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if any(v) != nil {
			out = append(out, v)
		}
	}
	return out, nil
}

func buildModel(raw json.RawMessage) (model, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("%w: no model", ErrMissingVocab)
	}
	var h struct {
		Type   *string         `json:"type"`
		Vocab  json.RawMessage `json:"vocab"`
		Merges json.RawMessage `json:"merges"`
		Prefix json.RawMessage `json:"continuing_subword_prefix"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if h.Type == nil { // old files: infer the model as HF's untagged serde does
		t := "WordLevel"
		switch {
		case bytes.HasPrefix(bytes.TrimSpace(h.Vocab), []byte("[")):
			t = "Unigram"
		case h.Merges != nil:
			t = "BPE"
		case h.Prefix != nil:
			t = "WordPiece"
		}
		h.Type = &t
	}
	f, ok := modelBuilders[*h.Type]
	if !ok {
		return nil, fmt.Errorf("%w: model type %q (want BPE, WordPiece, WordLevel or Unigram)", ErrUnknownType, *h.Type)
	}
	return f(raw)
}

// VocabSize is the number of distinct tokens, model vocab and added tokens
// together (HF's get_vocab_size(with_added_tokens=True)).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenID returns the id of a token string, added tokens first.
func (t *Tokenizer) TokenID(tok string) (int32, bool) {
	if id, ok := t.added.byText[tok]; ok {
		return id, true
	}
	id, ok := t.model.vocab()[tok]
	return id, ok
}

// token returns the string of an id, whether it is special, and whether the
// id exists.
func (t *Tokenizer) token(id int32) (string, bool, bool) {
	if id < 0 || int(id) >= len(t.strs) || !t.known[id] {
		return "", false, false
	}
	return t.strs[id], t.special[id], true
}

// maxText bounds Encode's input: offsets are kept as int32 internally.
const maxText = 1<<31 - 1<<20

// Encode tokenizes text. Added tokens in the text are always matched;
// addSpecial runs the post-processor's template (e.g. <s>, [CLS] ... [SEP]).
// Invalid UTF-8 bytes are each replaced by U+FFFD first.
func (t *Tokenizer) Encode(text string, addSpecial bool) (*Encoding, error) {
	return t.EncodeLimit(text, addSpecial, -1)
}

// EncodeLimit is Encode that stops with ErrTooManyTokens as soon as the
// text has more than limit tokens (special tokens included; a negative
// limit is none), so a huge text costs a pass over its bytes, not its
// whole encoding.
func (t *Tokenizer) EncodeLimit(text string, addSpecial bool, limit int) (*Encoding, error) {
	over := func(n int) bool { return limit >= 0 && n > limit }
	if len(text) > maxText {
		return nil, fmt.Errorf("tokenizer: text of %d bytes is over the %d-byte limit", len(text), maxText)
	}
	if !utf8.ValidString(text) {
		text = sanitizeUTF8(text)
	}
	sc := t.getScratch()
	defer t.putScratch(sc)
	if t.fast != nil {
		return t.encodeFast(text, sc, over)
	}
	e := &encoding{ids: sc.ids[:0], offsets: sc.offs[:0], canon: t.tokenString}
	toks := sc.toks[:0]
	var err error
	emit := func(s split) {
		if err != nil {
			return
		}
		toks, err = t.model.tokenize(s.n.s, s.byteLevel, toks[:0])
		for _, m := range toks {
			a, b := s.n.origRange(int(m.start), int(m.end))
			if m.value == "" && t.shadowed {
				m.value, _ = t.model.idToToken(m.id)
			}
			e.add(m.id, m.value, a, b)
		}
		if over(len(e.ids)) {
			err = ErrTooManyTokens
		}
	}
	modelPiece := func(n nstr) {
		if n.s == "" {
			return
		}
		if t.pre == nil {
			emit(split{n: n})
			return
		}
		t.pre.preTokenize(split{n: n}, emit)
	}
	t.added.findMatches(t.added.raw, text,
		func(a, b int) {
			n := identity(text[a:b], a)
			if t.normalizer != nil {
				n = t.normalizer.normalize(n)
			}
			t.added.findMatches(t.added.norm, n.s,
				func(a, b int) { modelPiece(n.slice(a, b)) },
				func(a, b int, tok *addedToken) {
					oa, ob := n.origRange(a, b)
					e.add(tok.ID, tok.Content, oa, ob)
				})
		},
		func(a, b int, tok *addedToken) { e.add(tok.ID, tok.Content, a, b) })
	sc.ids, sc.offs, sc.toks = e.ids, e.offsets, toks // keep grown buffers
	if err != nil {
		return nil, err
	}
	if t.post != nil {
		t.post.process(e, addSpecial)
	}
	if over(len(e.ids)) {
		return nil, ErrTooManyTokens
	}
	out := &Encoding{IDs: append([]int32(nil), e.ids...), Tokens: make([]string, len(e.ids))}
	out.Offsets, sc.chars = charOffsets(text, e.offsets, sc.chars)
	for i := range out.Tokens {
		out.Tokens[i] = e.token(i)
	}
	return out, nil
}

// encodeFast is Encode for byte-level BPE (see fastModel). It walks the
// text once, in order, so character offsets come from a running count
// instead of a byte-to-character table, and each word's ids and character
// offsets are appended straight from the model's word cache.
func (t *Tokenizer) encodeFast(text string, sc *scratch, over func(int) bool) (*Encoding, error) {
	m := t.fast
	ids, offs := sc.ids[:0], sc.coffs[:0]
	pos, ch := 0, 0 // ch is the number of characters in text[:pos]
	advance := func(to int) {
		for ; pos < to; pos++ {
			if utf8.RuneStart(text[pos]) {
				ch++
			}
		}
	}
	var err error
	addToken := func(a, b int, tok *addedToken) {
		advance(a)
		c0 := ch
		advance(b)
		ids = append(ids, tok.ID)
		offs = appendPair(offs, c0, ch)
	}
	t.added.findMatches(t.added.raw, text,
		func(a, b int) {
			seg := text[a:b]
			t.added.findMatches(t.added.norm, seg,
				func(x, y int) {
					advance(a + x)
					piece := seg[x:y]
					for i := 0; i < len(piece) && err == nil; {
						j := gpt2Next(piece, i)
						var n int
						ids, offs, n, err = m.appendWordChars(piece[i:j], ch, ids, offs)
						pos, ch = a+x+j, ch+n
						i = j
						if err == nil && over(len(ids)) {
							err = ErrTooManyTokens
						}
					}
				},
				func(x, y int, tok *addedToken) { addToken(a+x, a+y, tok) })
		},
		addToken)
	sc.ids, sc.coffs = ids, offs // keep grown buffers
	if err == nil && over(len(ids)) {
		err = ErrTooManyTokens // added tokens alone
	}
	if err != nil {
		return nil, err
	}
	out := &Encoding{
		IDs:     append([]int32(nil), ids...),
		Tokens:  make([]string, len(ids)),
		Offsets: append([][2]int(nil), offs...),
	}
	if out.Offsets == nil {
		out.Offsets = [][2]int{}
	}
	for i, id := range ids {
		out.Tokens[i] = t.strs[id]
	}
	return out, nil
}

// scratch holds Encode's working buffers between calls.
type scratch struct {
	ids   []int32
	offs  [][2]int32
	coffs [][2]int // encodeFast's offsets, in characters
	toks  []mtok
	chars []int32
}

// getScratch takes buffers from the tokenizer's small free list. Unlike a
// sync.Pool it survives garbage collections, which matters because a large
// Encode triggers several and would otherwise start from fresh pages.
func (t *Tokenizer) getScratch() *scratch {
	select {
	case s := <-t.free:
		return s
	default:
		return new(scratch)
	}
}

// putScratch keeps the buffers unless they grew huge (a one-off giant input
// should not pin memory) or the list is full.
func (t *Tokenizer) putScratch(s *scratch) {
	if cap(s.ids) > 4<<20 || cap(s.coffs) > 2<<20 || cap(s.chars) > 16<<20 {
		return
	}
	select {
	case t.free <- s:
	default:
	}
}

// tokenString is the string of an id ("" if unknown).
func (t *Tokenizer) tokenString(id int32) string {
	if id < 0 || int(id) >= len(t.strs) {
		return ""
	}
	return t.strs[id]
}

// charOffsets converts byte offsets to character offsets in place, walking
// a cursor (offsets are nearly sorted, so this is linear in practice).
func charOffsets(text string, offs [][2]int32, chars []int32) ([][2]int, []int32) {
	out := make([][2]int, len(offs))
	if isASCII(text) {
		for i, o := range offs {
			out[i] = [2]int{int(o[0]), int(o[1])}
		}
		return out, chars
	}
	// chars[b] is the number of characters before byte b.
	if cap(chars) < len(text)+1 {
		chars = make([]int32, len(text)+1)
	}
	chars = chars[:len(text)+1]
	n := int32(0)
	for i := 0; i < len(text); i++ {
		chars[i] = n
		if utf8.RuneStart(text[i]) {
			n++
		}
	}
	chars[len(text)] = n
	for i, o := range offs {
		a, b := max(0, min(int(o[0]), len(text))), max(0, min(int(o[1]), len(text)))
		out[i] = [2]int{int(chars[a]), int(chars[b])}
	}
	return out, chars
}

// Decode turns ids back into text. With skipSpecial, special added tokens
// are dropped first (HF's rule, which also drops byte tokens registered as
// special).
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		tok, special, ok := t.token(id)
		if !ok {
			return "", fmt.Errorf("tokenizer: %w: %d", ErrUnknownID, id)
		}
		if skipSpecial && special {
			continue
		}
		toks = append(toks, tok)
	}
	return t.decodeTokens(toks), nil
}

func (t *Tokenizer) decodeTokens(toks []string) string {
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decodeChain(toks), "")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
