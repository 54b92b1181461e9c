package tokenizer

import (
	"errors"
	"slices"
	"testing"
)

// EncodeLimit gives Encode's ids up to its limit and ErrTooManyTokens one
// token past it, on the fast and the general path of every fixture.
func TestEncodeLimit(t *testing.T) {
	text := mixedText(4 << 10)
	for name, tk := range fuzzTokenizers() {
		for path, tk := range map[string]*Tokenizer{"fast": tk, "general": general(tk)} {
			for _, addSpecial := range []bool{false, true} {
				full, err := tk.Encode(text, addSpecial)
				if err != nil {
					t.Fatal(err)
				}
				n := len(full.IDs)
				got, err := tk.EncodeLimit(text, addSpecial, n)
				if err != nil || !slices.Equal(got.IDs, full.IDs) {
					t.Fatalf("%s %s special=%v: limit %d = the length: %v", name, path, addSpecial, n, err)
				}
				if _, err := tk.EncodeLimit(text, addSpecial, n-1); !errors.Is(err, ErrTooManyTokens) {
					t.Fatalf("%s %s special=%v: limit %d below %d tokens: err %v", name, path, addSpecial, n-1, n, err)
				}
			}
		}
	}
}
