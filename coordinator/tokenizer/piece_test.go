package tokenizer

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// Concatenated pieces of an encoding, decoded as UTF-8, are the text that
// Decode gives for it, apart from what Decode does at the very start (a
// stripped or unprefixed first space).
func TestPiecesSpellTheDecodedText(t *testing.T) {
	files, err := filepath.Glob("../../testdata/golden/tokenizers/*_*.json")
	if err != nil || len(files) != 3 {
		t.Fatalf("want the 3 tokenizer fixtures, found %v (%v)", files, err)
	}
	texts := []string{"Hello, world! ", "naïve café 中文 😀 x", "  spaces\tand\nlines 12345"}
	for _, f := range files {
		tk, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range texts {
			enc, err := tk.Encode(text, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, id := range enc.IDs {
				p, ok := tk.Piece(id)
				if _, special, _ := tk.token(id); ok == special {
					t.Fatalf("%s: token %d of %q: piece %v, special %v", filepath.Base(f), id, text, ok, special)
				}
				got = append(got, p...)
			}
			want, err := tk.Decode(enc.IDs, true)
			if err != nil {
				t.Fatal(err)
			}
			// Compare modulo a leading space, which only a whole-text decode
			// strips, and for WordPiece modulo spaces (its cleanup joins
			// punctuation, which a model that generates does not use).
			g, w := bytes.TrimLeft(got, " "), bytes.TrimLeft([]byte(want), " ")
			if strings.HasPrefix(filepath.Base(f), "wordpiece") {
				g, w = bytes.ReplaceAll(g, []byte(" "), nil), bytes.ReplaceAll(w, []byte(" "), nil)
			}
			if !bytes.Equal(g, w) {
				t.Errorf("%s: pieces of %q spell %q, Decode gives %q", filepath.Base(f), text, got, want)
			}
		}
	}
}
