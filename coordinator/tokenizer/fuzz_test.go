package tokenizer

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unicode/utf8"
)

// fuzzTokenizers are loaded once per fuzz process: the three fixtures, the
// Llama 3, Qwen2 and Mistral pipelines, the bundled model and the inline
// Unigram tokenizer.
var fuzzTokenizers = sync.OnceValue(func() map[string]*Tokenizer {
	m := map[string]*Tokenizer{}
	for _, name := range fixtures {
		tk, err := Load(filepath.Join(goldenDir, name+".json"))
		if err != nil {
			panic(err)
		}
		m[name] = tk
	}
	for _, name := range pipelines {
		tk, err := Load(filepath.Join("testdata", "pipelines", name+".json"))
		if err != nil {
			panic(err)
		}
		m[name] = tk
	}
	tk, err := Load(filepath.Join(docbloomDir, "tokenizer.json"))
	if err != nil {
		panic(err)
	}
	m["docbloom-3m"] = tk
	if m["unigram"], err = FromJSON([]byte(unigramJSON)); err != nil {
		panic(err)
	}
	return m
})

var fuzzSeeds = []string{
	"", " ", "a", "Hello world", "hello  world", "Tabs\tand\nnewlines\n\n", "don't stop-believing; it's 2026!",
	"天空是湛蓝色的，阳光明媚，没有云彩。", "[CLS]我是谁？[SEP]主题是[MASK][MASK][SEP]", "emoji 🤗🚀 and café naïve",
	"<s></s><unk><pad><0xF0>", "İstanbul ǅ ﬁ Ⅻ", "\x00\x01\u200b\ufeff\uFFFD", "\xff\xfe invalid \xc3", "x'sx'llx'",
	"'ſx 'S  \n\n 1234567 \r\n\t!!!\n x", "e\u0303\u0328 ë\u0328\u0301 \u1100\u1161\u11a8", "<|eot_id|>[INST]<|im_start|>",
}

// FuzzEncode: any input (invalid UTF-8 included) encodes without panicking
// into consistent ids, tokens and offsets; byte-level BPE round-trips valid
// UTF-8 exactly.
func FuzzEncode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, addSpecial bool) {
		nChars := utf8.RuneCountInString(s)
		for name, tk := range fuzzTokenizers() {
			enc, err := tk.Encode(s, addSpecial)
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", name, s, err)
			}
			if len(enc.IDs) != len(enc.Tokens) || len(enc.IDs) != len(enc.Offsets) {
				t.Fatalf("%s: %d ids, %d tokens, %d offsets", name, len(enc.IDs), len(enc.Tokens), len(enc.Offsets))
			}
			for i, o := range enc.Offsets {
				if o[0] < 0 || o[0] > o[1] || o[1] > nChars {
					t.Fatalf("%s: Encode(%q): offset %d = %v outside [0, %d]", name, s, i, o, nChars)
				}
				if tok, ok := tk.TokenID(enc.Tokens[i]); name != "unigram" && (!ok || tok != enc.IDs[i]) {
					t.Fatalf("%s: token %q has id %d, TokenID says %d, %v", name, enc.Tokens[i], enc.IDs[i], tok, ok)
				}
			}
			dec, err := tk.Decode(enc.IDs, false)
			if err != nil {
				t.Fatalf("%s: Decode(Encode(%q)): %v", name, s, err)
			}
			roundTrip := name == "bytelevel_bpe" || name == "docbloom-3m" || (name == "llama3" && !addSpecial)
			if roundTrip && utf8.ValidString(s) && dec != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", name, s, dec)
			}
			if tk.fast != nil {
				checkFastPath(t, name, tk, s, addSpecial)
			}
		}
	})
}

// idsFrom reads little-endian uint16 ids from b, mapped into [-2, n+2) so
// that some are out of range.
func idsFrom(b []byte, n int) []int32 {
	ids := make([]int32, 0, len(b)/2)
	for len(b) >= 2 {
		ids = append(ids, int32(binary.LittleEndian.Uint16(b)%uint16(n+4))-2)
		b = b[2:]
	}
	return ids
}

// FuzzDecode: any id sequence decodes without panicking; the only error is
// ErrUnknownID, and only for ids outside the vocab.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{1, 0, 2, 0, 3, 1, 200, 0}, true)
	f.Add([]byte{0xf3, 0, 0xa2, 0, 0xa7, 0, 0x9a, 0}, false)
	f.Fuzz(func(t *testing.T, b []byte, skip bool) {
		for name, tk := range fuzzTokenizers() {
			ids := idsFrom(b, tk.VocabSize())
			out, err := tk.Decode(ids, skip)
			bad := false
			for _, id := range ids {
				if _, _, ok := tk.token(id); !ok {
					bad = true
				}
			}
			if bad != (err != nil) || (err != nil && !errors.Is(err, ErrUnknownID)) {
				t.Fatalf("%s: Decode(%v) error %v, unknown ids present: %v", name, ids, err, bad)
			}
			if err == nil && !utf8.ValidString(out) {
				t.Fatalf("%s: Decode(%v) = %q is not valid UTF-8", name, ids, out)
			}
		}
	})
}

// FuzzStream: the streaming detokenizer's pieces concatenate to Decode for
// random id sequences (in-vocab ids), with and without skipping specials.
func FuzzStream(f *testing.F) {
	f.Add([]byte{5, 1, 3, 1, 200, 0, 42, 0}, false)
	f.Add([]byte{0xf3, 0, 0xa2, 0, 0xa7, 0, 0x9a, 0, 0x66, 1}, true)
	f.Fuzz(func(t *testing.T, b []byte, skip bool) {
		for _, tk := range fuzzTokenizers() {
			ids := idsFrom(b, tk.VocabSize())
			for i, id := range ids {
				if id < 0 {
					ids[i] = -id
				}
				if _, _, ok := tk.token(ids[i]); !ok {
					ids[i] = 0
				}
			}
			checkStream(t, tk, ids, skip)
		}
	})
}

// FuzzFromJSON: no tokenizer.json, however broken, makes FromJSON panic; one
// that loads can encode and decode.
func FuzzFromJSON(f *testing.F) {
	for _, name := range fixtures {
		b, err := os.ReadFile(filepath.Join(goldenDir, name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(unigramJSON))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits"},null]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := FromJSON(b)
		if err != nil {
			return
		}
		enc, err := tk.Encode("Hello wörld 12 <s> 天", true)
		if err != nil {
			return // e.g. a WordLevel word outside the vocab without unk
		}
		_, _ = tk.Decode(enc.IDs, true)
	})
}
