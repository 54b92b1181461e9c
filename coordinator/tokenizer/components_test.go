package tokenizer

import (
	"encoding/json"
	"golang.org/x/text/unicode/norm"
	"reflect"
	"testing"
)

// encodeCase is one expected encoding.
type encodeCase struct {
	name       string
	text       string
	addSpecial bool
	ids        []int32
	tokens     []string
	offsets    [][2]int
}

func checkEncode(t *testing.T, tk *Tokenizer, cases []encodeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc, err := tk.Encode(c.text, c.addSpecial)
			if err != nil {
				t.Fatal(err)
			}
			if c.ids != nil && !eqSlice(enc.IDs, c.ids) {
				t.Errorf("ids %v, want %v", enc.IDs, c.ids)
			}
			if !eqSlice(enc.Tokens, c.tokens) {
				t.Errorf("tokens %q, want %q", enc.Tokens, c.tokens)
			}
			if !eqSlice(enc.Offsets, c.offsets) {
				t.Errorf("offsets %v, want %v", enc.Offsets, c.offsets)
			}
		})
	}
}

func mustFromJSON(t *testing.T, b []byte) *Tokenizer {
	t.Helper()
	tk, err := FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

const unigramJSON = `{
  "added_tokens": [{"id": 0, "content": "<unk>", "special": true}],
  "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
  "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
  "model": {"type": "Unigram", "unk_id": 0, "vocab": [
    ["<unk>", 0], ["▁", -2], ["▁a", -1], ["b", -2], ["ab", -1.5], ["▁ab", -4], ["c", -3]]}
}`

// TestUnigram checks Viterbi choices, fused unknowns (reported as their own
// text, as HF does) and Metaspace offsets.
func TestUnigram(t *testing.T) {
	tk := mustFromJSON(t, []byte(unigramJSON))
	checkEncode(t, tk, []encodeCase{
		// ▁a+b (-3) beats ▁+ab (-3.5) and ▁ab (-4).
		{"best path", "ab c", false, []int32{2, 3, 1, 6}, []string{"▁a", "b", "▁", "c"}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}},
		{"unknowns fuse", "xy", false, []int32{1, 0}, []string{"▁", "xy"}, [][2]int{{0, 1}, {0, 2}}},
		{"empty", "", false, nil, nil, nil},
	})
	for _, c := range []struct {
		ids  []int32
		want string
	}{{[]int32{2, 3, 1, 6}, "ab c"}, {[]int32{1, 0}, "<unk>"}} {
		if got, err := tk.Decode(c.ids, false); err != nil || got != c.want {
			t.Errorf("Decode(%v) = %q, %v; want %q", c.ids, got, err, c.want)
		}
	}
	if got, _ := tk.Decode([]int32{1, 0, 3}, true); got != "b" {
		t.Errorf("Decode skipping <unk> = %q, want %q", got, "b")
	}
}

// TestWordLevel covers WordLevel with WhitespaceSplit and no decoder (HF
// joins tokens with spaces).
func TestWordLevel(t *testing.T) {
	tk := mustFromJSON(t, []byte(`{"pre_tokenizer": {"type": "WhitespaceSplit"},
		"model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}}}`))
	checkEncode(t, tk, []encodeCase{
		{"known and unknown", "hello big  world", false, []int32{1, 0, 2}, []string{"hello", "[UNK]", "world"}, [][2]int{{0, 5}, {6, 9}, {11, 16}}},
	})
	if got, _ := tk.Decode([]int32{1, 0, 2}, false); got != "hello [UNK] world" {
		t.Errorf("Decode = %q", got)
	}
}

// withPost returns a fixture with its post_processor replaced.
func withPost(t *testing.T, name, post string) *Tokenizer {
	return mustFromJSON(t, patchFixture(t, name, func(m map[string]any) {
		var p any
		if err := json.Unmarshal([]byte(post), &p); err != nil {
			t.Fatal(err)
		}
		m["post_processor"] = p
	}))
}

func TestPostProcessors(t *testing.T) {
	t.Run("BertProcessing", func(t *testing.T) {
		tk := withPost(t, "wordpiece_bert", `{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}`)
		checkEncode(t, tk, []encodeCase{
			{"with specials", "a", true, []int32{2, 43, 3}, []string{"[CLS]", "a", "[SEP]"}, [][2]int{{0, 0}, {0, 1}, {0, 0}}},
			{"without", "a", false, []int32{43}, []string{"a"}, [][2]int{{0, 1}}},
		})
	})
	t.Run("RobertaProcessing", func(t *testing.T) {
		tk := withPost(t, "bytelevel_bpe", `{"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": true, "add_prefix_space": false}`)
		toks := []string{"he", "l", "lo", "Ġ", "Ġw", "or", "l", "d"}
		trimmed := [][2]int{{0, 2}, {2, 3}, {3, 5}, {6, 6}, {7, 8}, {8, 10}, {10, 11}, {11, 12}}
		checkEncode(t, tk, []encodeCase{
			{"trims and wraps", "hello  world", true, nil, append(append([]string{"<s>"}, toks...), "</s>"),
				append(append([][2]int{{0, 0}}, trimmed...), [2]int{0, 0})},
			{"trims without specials", "hello  world", false, nil, toks, trimmed},
		})
	})
	t.Run("ByteLevel", func(t *testing.T) {
		tk := withPost(t, "bytelevel_bpe", `{"type": "ByteLevel", "trim_offsets": true, "add_prefix_space": true}`)
		checkEncode(t, tk, []encodeCase{
			// The first token's single leading space is kept (it may be the
			// added prefix); its trailing one is still trimmed.
			{"first token keeps prefix space", " leading space", false, nil,
				[]string{"Ġ", "le", "ad", "ing", "Ġs", "p", "a", "ce"},
				[][2]int{{0, 0}, {1, 3}, {3, 5}, {5, 8}, {9, 10}, {10, 11}, {11, 12}, {12, 14}}},
		})
	})
	t.Run("TemplateProcessing", func(t *testing.T) {
		tk := withPost(t, "metaspace_bpe_bytefallback", `{"type": "TemplateProcessing",
			"single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
			"pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}`)
		checkEncode(t, tk, []encodeCase{
			{"bos and eos", "a", true, []int32{1, 358, 325, 2}, []string{"<s>", "▁", "a", "</s>"}, [][2]int{{0, 0}, {0, 1}, {0, 1}, {0, 0}}},
			{"empty text still gets specials", "", true, []int32{1, 2}, []string{"<s>", "</s>"}, [][2]int{{0, 0}, {0, 0}}},
		})
	})
}

// withAdded returns a fixture with extra added tokens.
func withAdded(t *testing.T, name string, extra ...map[string]any) *Tokenizer {
	return mustFromJSON(t, patchFixture(t, name, func(m map[string]any) {
		for _, e := range extra {
			m["added_tokens"] = append(m["added_tokens"].([]any), e)
		}
	}))
}

func TestAddedTokens(t *testing.T) {
	t.Run("lstrip", func(t *testing.T) {
		tk := withAdded(t, "bytelevel_bpe", map[string]any{"id": 512, "content": "<mask>", "lstrip": true, "special": true})
		checkEncode(t, tk, []encodeCase{
			{"eats the space before", "a <mask> b", false, nil, []string{"a", "<mask>", "Ġb"}, [][2]int{{0, 1}, {1, 8}, {8, 10}}},
		})
	})
	t.Run("rstrip", func(t *testing.T) {
		tk := withAdded(t, "bytelevel_bpe", map[string]any{"id": 512, "content": "<x>", "rstrip": true})
		checkEncode(t, tk, []encodeCase{
			{"eats the spaces after", "a<x>  b", false, nil, []string{"a", "<x>", "b"}, [][2]int{{0, 1}, {1, 6}, {6, 7}}},
		})
	})
	t.Run("single_word", func(t *testing.T) {
		tk := withAdded(t, "wordpiece_bert", map[string]any{"id": 800, "content": "cat", "single_word": true})
		enc, err := tk.Encode("cat concat cat.", false)
		if err != nil {
			t.Fatal(err)
		}
		var at [][2]int
		for i, id := range enc.IDs {
			if id == 800 {
				at = append(at, enc.Offsets[i])
			}
		}
		if want := [][2]int{{0, 3}, {11, 14}}; !reflect.DeepEqual(at, want) {
			t.Errorf("single-word token matched at %v, want %v (not inside \"concat\")", at, want)
		}
	})
	t.Run("normalized", func(t *testing.T) {
		// A normalized added token is matched in the lowercased text.
		tk := withAdded(t, "wordpiece_bert", map[string]any{"id": 800, "content": "Hello", "normalized": true})
		checkEncode(t, tk, []encodeCase{
			{"matches after lowercasing", "HELLO", false, []int32{800}, []string{"Hello"}, [][2]int{{0, 5}}},
		})
	})
	t.Run("non-normalized tokens are matched first", func(t *testing.T) {
		// HF cuts out non-normalized added tokens over the whole text before
		// it looks for normalized ones, so "b" wins over the longer "ab".
		tk := withAdded(t, "bytelevel_bpe",
			map[string]any{"id": 512, "content": "ab", "normalized": true}, map[string]any{"id": 513, "content": "b"})
		checkEncode(t, tk, []encodeCase{
			{"raw before normalized", "ab", false, []int32{68, 513}, []string{"a", "b"}, [][2]int{{0, 1}, {1, 2}}},
		})
	})
	t.Run("longest match wins", func(t *testing.T) {
		tk := withAdded(t, "bytelevel_bpe",
			map[string]any{"id": 512, "content": "<a>"}, map[string]any{"id": 513, "content": "<a><b>"})
		checkEncode(t, tk, []encodeCase{
			{"leftmost longest", "<a><b><a>", false, []int32{513, 512}, []string{"<a><b>", "<a>"}, [][2]int{{0, 6}, {6, 9}}},
		})
	})
}

// collect runs a pre-tokenizer and returns the pieces.
func collect(p preTokenizer, s string) []string {
	var out []string
	p.preTokenize(split{n: identity(s, 0)}, func(x split) { out = append(out, x.n.s) })
	return out
}

func TestPreTokenizers(t *testing.T) {
	cases := []struct {
		name string
		p    preTokenizer
		in   string
		want []string
	}{
		{"gpt2 words", byteLevelPre{false, true}, "Hello world", []string{"Hello", " world"}},
		{"gpt2 double space", byteLevelPre{false, true}, "a  b", []string{"a", " ", " b"}},
		{"gpt2 trailing spaces", byteLevelPre{false, true}, "x   ", []string{"x", "   "}},
		{"gpt2 contractions", byteLevelPre{false, true}, "it's 'sup", []string{"it", "'s", " '", "sup"}},
		{"gpt2 punctuation run", byteLevelPre{false, true}, "!!'s", []string{"!!'", "s"}},
		{"gpt2 digits", byteLevelPre{false, true}, "1.5", []string{"1", ".", "5"}},
		{"gpt2 mixed whitespace", byteLevelPre{false, true}, " \n x", []string{" \n", " x"}},
		{"gpt2 tab", byteLevelPre{false, true}, "a\tb", []string{"a", "\t", "b"}},
		{"gpt2 cjk letters", byteLevelPre{false, true}, "日本語とEnglish。", []string{"日本語とEnglish", "。"}},
		{"gpt2 prefix space", byteLevelPre{true, true}, "hi", []string{" hi"}},
		{"bert", bertPre{}, "Hey, you're\t12!", []string{"Hey", ",", "you", "'", "re", "12", "!"}},
		{"whitespace", whitespacePre{}, "Hey, you're 12!", []string{"Hey", ",", "you", "'", "re", "12", "!"}},
		{"whitespace split", charSplitPre{isWhitespace, behaviorRemoved}, " a  b\n", []string{"a", "b"}},
		{"digits individual", charSplitPre{func(r rune) bool { return r >= '0' && r <= '9' }, behaviorIsolated}, "a123b", []string{"a", "1", "2", "3", "b"}},
		{"digits contiguous", charSplitPre{func(r rune) bool { return r >= '0' && r <= '9' }, behaviorContiguous}, "a123b", []string{"a", "123", "b"}},
		{"merged with previous", charSplitPre{func(r rune) bool { return r == '-' }, behaviorMergedWithPrevious}, "a-b--c", []string{"a-", "b-", "-", "c"}},
		{"merged with next", charSplitPre{func(r rune) bool { return r == '-' }, behaviorMergedWithNext}, "a-b--c", []string{"a", "-b", "-", "-c"}},
		{"metaspace", metaspacePre{"▁", "always", true}, "Hey  friend", []string{"▁Hey", "▁", "▁friend"}},
		{"metaspace never", metaspacePre{"▁", "never", true}, "Hey friend", []string{"Hey", "▁friend"}},
		{"split string removed", patternSplitPre{pattern{lit: ", "}, behaviorRemoved, false}, "a, b, c", []string{"a", "b", "c"}},
		{"split string inverted", patternSplitPre{pattern{lit: "ab"}, behaviorRemoved, true}, "xabyab", []string{"ab", "ab"}},
		{"sequence", seqPre{whitespacePre{}, charSplitPre{func(r rune) bool { return r >= '0' && r <= '9' }, behaviorIsolated}}, "ab12 c", []string{"ab", "1", "2", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := collect(c.p, c.in); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestNormalizers(t *testing.T) {
	nfd := unicodeNormalizer{f: norm.NFD}
	cases := []struct {
		name string
		n    normalizer
		in   string
		want string
		orig [][2]int // original byte range of each output rune
	}{
		{"nfd splits accents, both map to é", nfd, "é", "e\u0301", [][2]int{{0, 2}, {0, 2}}},
		{"nfc composes, mapped to the base letter", unicodeNormalizer{f: norm.NFC}, "e\u0301x", "éx", [][2]int{{0, 1}, {3, 4}}},
		// HF's alignments through reordering and composition (checked with
		// tokenizers 0.23): an extra decomposition piece is inserted, aligned
		// to the last consumed character; a composition consumes its parts.
		{"nfd inserted piece, then a consumed one", nfd, "ë\u0301", "e\u0308\u0301", [][2]int{{0, 2}, {0, 2}, {2, 4}}},
		{"nfc reorders and composes", unicodeNormalizer{f: norm.NFC}, "ë\u0328\u0301x", "ę\u0308\u0301x", [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 7}}},
		{"nfc composes Hangul jamo", unicodeNormalizer{f: norm.NFC}, "\u1100\u1161\u11a8", "각", [][2]int{{0, 3}}},
		{"nfkd expands a ligature", unicodeNormalizer{f: norm.NFKD}, "ﬁ\u0301", "fi\u0301", [][2]int{{0, 3}, {0, 3}, {3, 5}}},
		{"lowercase dotted I becomes two", lowercaseNormalizer{}, "İa", "i\u0307a", [][2]int{{0, 2}, {0, 2}, {2, 3}}},
		{"strip", stripNormalizer{true, true}, "  ab \n", "ab", [][2]int{{2, 3}, {3, 4}}},
		{"strip accents after nfd", seqNormalizer{nfd, stripAccentsNormalizer{}}, "naïve", "naive", [][2]int{{0, 1}, {1, 2}, {2, 4}, {4, 5}, {5, 6}}},
		{"prepend", prependNormalizer("▁"), "ab", "▁ab", [][2]int{{0, 1}, {0, 1}, {1, 2}}},
		{"replace", replaceNormalizer{pattern{lit: " "}, "▁"}, "a b", "a▁b", [][2]int{{0, 1}, {1, 2}, {2, 3}}},
		{"bert cleans, splits CJK, lowercases", bertNormalizer{true, true, true, true}, "A\x00中\tÉ", "a 中  e", [][2]int{{0, 1}, {2, 5}, {2, 5}, {2, 5}, {5, 6}, {6, 8}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := c.n.normalize(identity(c.in, 0))
			if got.s != c.want {
				t.Fatalf("normalized %q, want %q", got.s, c.want)
			}
			var orig [][2]int
			for i, r := range got.s {
				a, b := got.origRange(i, i+len(string(r)))
				orig = append(orig, [2]int{a, b})
			}
			if !reflect.DeepEqual(orig, c.orig) {
				t.Errorf("alignments %v, want %v", orig, c.orig)
			}
		})
	}
}
