package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// AddedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedVocab holds the added tokens, matched in the text before the model
// runs and never split: non-normalized ones on the raw text, normalized ones
// on the normalized text (HF's AddedVocabulary).
type addedVocab struct {
	tokens  []addedToken
	byText  map[string]int32
	special map[string]bool
	raw     *trie // non-normalized contents
	norm    *trie // normalized contents (after the normalizer)
}

func newAddedVocab(toks []addedToken, nz normalizer) (*addedVocab, error) {
	a := &addedVocab{byText: map[string]int32{}, special: map[string]bool{}, raw: newTrie(), norm: newTrie()}
	for i, t := range toks {
		if t.Content == "" {
			return nil, fmt.Errorf("%w: added_tokens[%d] (id %d) has empty content", ErrMalformed, i, t.ID)
		}
		if t.ID < 0 {
			return nil, fmt.Errorf("%w: added_tokens[%d] %q has negative id %d", ErrMalformed, i, t.Content, t.ID)
		}
		a.tokens = append(a.tokens, t)
		a.byText[t.Content] = t.ID
		if t.Special {
			a.special[t.Content] = true
		}
		switch {
		case !t.Normalized:
			a.raw.insert(t.Content, len(a.tokens)-1)
		case nz != nil:
			a.norm.insert(nz.normalize(identity(t.Content, 0)).s, len(a.tokens)-1)
		default: // still matched after the non-normalized ones, as in HF
			a.norm.insert(t.Content, len(a.tokens)-1)
		}
	}
	return a, nil
}

// trie finds added tokens, leftmost-longest (as HF's aho-corasick set).
type trie struct {
	nodes []trieNode
	first [256]bool
}

type trieNode struct {
	next map[byte]int32
	tok  int // index into addedVocab.tokens, -1 if none
}

func newTrie() *trie { return &trie{nodes: []trieNode{{tok: -1}}} }

func (t *trie) insert(s string, tok int) {
	if s == "" {
		return
	}
	t.first[s[0]] = true
	n := 0
	for i := 0; i < len(s); i++ {
		nx, ok := t.nodes[n].next[s[i]]
		if !ok {
			if t.nodes[n].next == nil {
				t.nodes[n].next = map[byte]int32{}
			}
			t.nodes = append(t.nodes, trieNode{tok: -1})
			nx = int32(len(t.nodes) - 1)
			t.nodes[n].next[s[i]] = nx
		}
		n = int(nx)
	}
	if t.nodes[n].tok < 0 {
		t.nodes[n].tok = tok
	}
}

func (t *trie) empty() bool { return len(t.nodes) == 1 }

// longest returns the token and end of the longest match starting at i.
func (t *trie) longest(s string, i int) (tok, end int) {
	tok, end = -1, -1
	n := 0
	for j := i; j < len(s); j++ {
		nx, ok := t.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = int(nx)
		if t.nodes[n].tok >= 0 {
			tok, end = t.nodes[n].tok, j+1
		}
	}
	return tok, end
}

// findMatches is HF's AddedVocabulary::find_matches: it calls piece for the
// text between tokens and token for each match, honouring single_word,
// lstrip and rstrip.
func (a *addedVocab) findMatches(t *trie, s string, piece func(a, b int), token func(a, b int, tok *addedToken)) {
	if t.empty() {
		if s != "" {
			piece(0, len(s))
		}
		return
	}
	startOffset := 0
	for i := 0; i < len(s); {
		if !t.first[s[i]] {
			i++
			continue
		}
		idx, end := t.longest(s, i)
		if idx < 0 {
			i++
			continue
		}
		tok := &a.tokens[idx]
		start, stop := i, end
		if tok.SingleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				i++
				continue
			}
		}
		if tok.LStrip {
			k := start
			for k > startOffset {
				r, sz := utf8.DecodeLastRuneInString(s[:k])
				if !isWhitespace(r) {
					break
				}
				k -= sz
			}
			start = k
		}
		if tok.RStrip {
			for stop < len(s) {
				r, sz := utf8.DecodeRuneInString(s[stop:])
				if !isWhitespace(r) {
					break
				}
				stop += sz
			}
		}
		if start > startOffset {
			piece(startOffset, start)
		}
		token(start, stop, tok)
		startOffset = stop
		i = stop
	}
	if startOffset < len(s) {
		piece(startOffset, len(s))
	}
}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.In(r, unicode.M, unicode.Pc)
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordRune(r)
}
