package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"
)

func init() {
	modelBuilders["WordPiece"] = newWordPiece
	modelBuilders["WordLevel"] = newWordLevel
	modelBuilders["Unigram"] = newUnigram
}

// viaByteAlphabet runs a character-based model on the byte-alphabet form of
// a byte-level word and maps the offsets back to the word's bytes.
func viaByteAlphabet(m model, word string, dst []mtok) ([]mtok, error) {
	w, f := byteLevelWord(word)
	n0 := len(dst)
	dst, err := m.tokenize(w, false, dst)
	remapOffsets(dst[n0:], f)
	return dst, err
}

// byteLevelWord maps a byte-level word to its alphabet form, and returns a
// function from alphabet byte offsets back to word byte offsets.
func byteLevelWord(word string) (string, func(int32) int32) {
	w := toByteAlphabet(word)
	src := make([]int32, len(w)+1)
	k := 0
	for i := 0; i < len(word); i++ {
		for range len(byteChar[word[i]]) {
			src[k] = int32(i)
			k++
		}
	}
	src[len(w)] = int32(len(word))
	return w, func(o int32) int32 { return src[o] }
}

func remapOffsets(toks []mtok, f func(int32) int32) {
	for i := range toks {
		s, e := toks[i].start, toks[i].end
		toks[i].start = f(s)
		if e > s {
			toks[i].end = f(e-1) + 1
		} else {
			toks[i].end = toks[i].start
		}
	}
}

// wordPiece is HF's WordPiece model: greedy longest-match-first.
type wordPiece struct {
	vocabTable
	cont     map[string]int32 // continuation tokens, keyed without the prefix
	unk      int32
	unkToken string
	prefix   string
	maxChars int
}

func newWordPiece(raw json.RawMessage) (model, error) {
	c := struct {
		Vocab    map[string]int32 `json:"vocab"`
		Unk      string           `json:"unk_token"`
		Prefix   string           `json:"continuing_subword_prefix"`
		MaxChars int              `json:"max_input_chars_per_word"`
	}{Unk: "[UNK]", Prefix: "##", MaxChars: 100}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: WordPiece model: %v", ErrMalformed, err)
	}
	vt, err := newVocabTable(c.Vocab)
	if err != nil {
		return nil, fmt.Errorf("WordPiece model: %w", err)
	}
	unk, ok := vt.ids[c.Unk]
	if !ok {
		return nil, fmt.Errorf("%w: WordPiece unk_token %q is not in the vocab", ErrMissingVocab, c.Unk)
	}
	m := &wordPiece{vocabTable: vt, cont: map[string]int32{}, unk: unk, unkToken: c.Unk, prefix: c.Prefix, maxChars: c.MaxChars}
	for tok, id := range vt.ids {
		if len(tok) >= len(c.Prefix) && tok[:len(c.Prefix)] == c.Prefix {
			m.cont[tok[len(c.Prefix):]] = id
		}
	}
	return m, nil
}

func (m *wordPiece) tokenize(word string, byteLevel bool, dst []mtok) ([]mtok, error) {
	if byteLevel {
		return viaByteAlphabet(m, word, dst)
	}
	unkTok := mtok{m.unk, 0, int32(len(word)), ""}
	if utf8.RuneCountInString(word) > m.maxChars {
		return append(dst, unkTok), nil
	}
	n0 := len(dst)
	for start := 0; start < len(word); {
		end := len(word)
		found := false
		for start < end {
			var id int32
			var ok bool
			if start > 0 {
				id, ok = m.cont[word[start:end]]
			} else {
				id, ok = m.ids[word[start:end]]
			}
			if ok {
				dst = append(dst, mtok{id, int32(start), int32(end), ""})
				found = true
				break
			}
			_, sz := utf8.DecodeLastRuneInString(word[start:end])
			end -= sz
		}
		if !found {
			return append(dst[:n0], unkTok), nil
		}
		start = end
	}
	return dst, nil
}

// wordLevel maps each word to its id, or to the unknown token.
type wordLevel struct {
	vocabTable
	unk      int32
	unkToken string
}

func newWordLevel(raw json.RawMessage) (model, error) {
	var c struct {
		Vocab map[string]int32 `json:"vocab"`
		Unk   string           `json:"unk_token"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: WordLevel model: %v", ErrMalformed, err)
	}
	vt, err := newVocabTable(c.Vocab)
	if err != nil {
		return nil, fmt.Errorf("WordLevel model: %w", err)
	}
	m := &wordLevel{vocabTable: vt, unk: -1, unkToken: c.Unk}
	if id, ok := vt.ids[c.Unk]; ok {
		m.unk = id
	}
	return m, nil
}

func (m *wordLevel) tokenize(word string, byteLevel bool, dst []mtok) ([]mtok, error) {
	w := word
	if byteLevel {
		w = toByteAlphabet(word)
	}
	if id, ok := m.ids[w]; ok {
		return append(dst, mtok{id, 0, int32(len(word)), ""}), nil
	}
	if m.unk < 0 {
		return dst, fmt.Errorf("%w: WordLevel: %q is not in the vocab and there is no unk_token", ErrMissingVocab, w)
	}
	return append(dst, mtok{m.unk, 0, int32(len(word)), ""}), nil
}

// unigram is HF's Unigram model (SentencePiece): Viterbi over the pieces,
// unknown characters fused, optional byte fallback.
type unigram struct {
	vocabTable
	scores       []float64
	unk          int32
	byteFallback bool
	minScore     float64
	maxLen       int // longest piece in bytes
}

func newUnigram(raw json.RawMessage) (model, error) {
	var c struct {
		Vocab        []json.RawMessage `json:"vocab"`
		UnkID        *int32            `json:"unk_id"`
		ByteFallback bool              `json:"byte_fallback"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: Unigram model: %v", ErrMalformed, err)
	}
	if len(c.Vocab) == 0 {
		return nil, fmt.Errorf("%w: Unigram model: vocab is empty or absent", ErrMissingVocab)
	}
	v := make(map[string]int32, len(c.Vocab))
	m := &unigram{unk: -1, byteFallback: c.ByteFallback, minScore: math.Inf(1), scores: make([]float64, len(c.Vocab))}
	for i, it := range c.Vocab {
		var pair []any
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("%w: Unigram vocab[%d] %s is not a [piece, score] pair", ErrMalformed, i, it)
		}
		piece, ok1 := pair[0].(string)
		score, ok2 := pair[1].(float64)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: Unigram vocab[%d] %s is not a [piece, score] pair", ErrMalformed, i, it)
		}
		if _, dup := v[piece]; !dup {
			v[piece] = int32(i)
		}
		m.scores[i] = score
		m.minScore = math.Min(m.minScore, score)
		m.maxLen = max(m.maxLen, len(piece))
	}
	vt, err := newVocabTable(v)
	if err != nil {
		return nil, fmt.Errorf("Unigram model: %w", err)
	}
	m.vocabTable = vt
	if c.UnkID != nil {
		if *c.UnkID < 0 || int(*c.UnkID) >= len(c.Vocab) {
			return nil, fmt.Errorf("%w: Unigram unk_id %d is outside the vocab", ErrMissingVocab, *c.UnkID)
		}
		m.unk = *c.UnkID
	}
	return m, nil
}

func (m *unigram) tokenize(word string, byteLevel bool, dst []mtok) ([]mtok, error) {
	if byteLevel {
		return viaByteAlphabet(m, word, dst)
	}
	type node struct {
		id      int32
		score   float64
		start   int
		reached bool
	}
	const unkPenalty = 10.0
	best := make([]node, len(word)+1)
	best[0].reached = true
	for start := 0; start < len(word); {
		_, mblen := utf8.DecodeRuneInString(word[start:])
		base := best[start].score
		single := false
		for end := start + 1; end <= len(word) && end-start <= m.maxLen; end++ {
			if end < len(word) && !utf8.RuneStart(word[end]) {
				continue
			}
			id, ok := m.ids[word[start:end]]
			if !ok {
				continue
			}
			s := base + m.scores[id]
			if t := &best[end]; !t.reached || s > t.score {
				*t = node{id, s, start, true}
			}
			if end-start == mblen {
				single = true
			}
		}
		if !single {
			if m.unk < 0 {
				return dst, fmt.Errorf("%w: Unigram: %q needs unk_id, which the model lacks", ErrMissingVocab, word[start:start+mblen])
			}
			s := base + m.minScore - unkPenalty
			if t := &best[start+mblen]; !t.reached || s > t.score {
				*t = node{m.unk, s, start, true}
			}
		}
		start += mblen
	}
	// Walk back, fusing consecutive unknowns.
	type piece struct {
		a, b int
		unk  bool
	}
	var rev []piece
	for end := len(word); end > 0; {
		n := best[end]
		isUnk := n.id == m.unk
		if isUnk && len(rev) > 0 && rev[len(rev)-1].unk {
			rev[len(rev)-1].a = n.start
		} else {
			rev = append(rev, piece{n.start, end, isUnk})
		}
		end = n.start
	}
	for i := len(rev) - 1; i >= 0; i-- {
		p := rev[i]
		s := word[p.a:p.b]
		id, ok := m.ids[s]
		if !ok && m.byteFallback {
			ok = true
			var bytes []int32
			for k := 0; k < len(s) && ok; k++ {
				var bid int32
				bid, ok = m.ids[fmt.Sprintf("<0x%02X>", s[k])]
				bytes = append(bytes, bid)
			}
			if ok {
				for _, bid := range bytes {
					dst = append(dst, mtok{bid, int32(p.a), int32(p.b), ""})
				}
				continue
			}
		}
		val := ""
		if !ok {
			id, val = m.unk, s // HF reports the unknown text itself as the token
		}
		dst = append(dst, mtok{id, int32(p.a), int32(p.b), val})
	}
	return dst, nil
}
