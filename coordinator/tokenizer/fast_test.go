package tokenizer

import (
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// general returns a copy of tk that always takes Encode's general path.
func general(tk *Tokenizer) *Tokenizer {
	g := *tk
	g.fast = nil
	return &g
}

// checkFastPath compares Encode's fast path with the general path on s.
func checkFastPath(t *testing.T, name string, tk *Tokenizer, s string, addSpecial bool) {
	t.Helper()
	want, err1 := general(tk).Encode(s, addSpecial)
	got, err2 := tk.Encode(s, addSpecial)
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("%s: Encode(%q): fast path error %v, general path %v", name, s, err2, err1)
	}
	if !reflect.DeepEqual(got, want) {
		for i := range min(len(got.IDs), len(want.IDs)) {
			if got.IDs[i] != want.IDs[i] || got.Tokens[i] != want.Tokens[i] || got.Offsets[i] != want.Offsets[i] {
				t.Fatalf("%s: Encode(%q): token %d: fast path %d %q %v, general path %d %q %v", name, s, i,
					got.IDs[i], got.Tokens[i], got.Offsets[i], want.IDs[i], want.Tokens[i], want.Offsets[i])
			}
		}
		t.Fatalf("%s: Encode(%q): fast path %d tokens, general path %d (or nil/empty differ: %#v %#v)", name, s,
			len(got.IDs), len(want.IDs), got, want)
	}
}

// TestFastPath: the byte-level fast path is taken for both byte-level
// tokenizers and gives exactly the general path's ids, tokens and offsets.
func TestFastPath(t *testing.T) {
	texts := append([]string{
		mixedText(200 << 10),
		"<s>hello</s> world<pad>天空<unk>",
		"    indented code():\n        return x  \n\n\t ",
		"don't it's we're 'll 'LL x'y",
		"emoji 🤗🚀 and café naïve İstanbul \u200b\ufeff",
		"\xff\xfe invalid \xc3 bytes \xe4\xb8",
		strings.Repeat("的", 100) + strings.Repeat("ab", 100) + strings.Repeat(" ", 70),
	}, fuzzSeeds...)
	for name, tk := range fuzzTokenizers() {
		isBL := name == "bytelevel_bpe" || name == "docbloom-3m"
		if (tk.fast != nil) != isBL {
			t.Fatalf("%s: fast path enabled = %v, want %v", name, tk.fast != nil, isBL)
		}
		if !isBL {
			continue
		}
		for _, s := range texts {
			for _, addSpecial := range []bool{false, true} {
				checkFastPath(t, name, tk, s, addSpecial)
				checkFastPath(t, name, tk, s, addSpecial) // word cache warm
			}
		}
	}
}

// TestClassAtCJK: classAt's shortcut for lead bytes E5-E9 agrees with the
// Unicode tables.
func TestClassAtCJK(t *testing.T) {
	for r := rune(0x5000); r <= 0x9FFF; r++ {
		s := string(r) + "x"
		if cls, size := classAt(s, 0); cls != clsLetter || size != 3 || !unicode.IsLetter(r) {
			t.Fatalf("U+%04X: class %d size %d, IsLetter %v", r, cls, size, unicode.IsLetter(r))
		}
	}
}
