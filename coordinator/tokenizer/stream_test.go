package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamAll feeds ids one by one and returns the pieces, Flush last.
func streamAll(t testing.TB, tk *Tokenizer, ids []int32, skip bool) []string {
	t.Helper()
	d := tk.NewDecoder(skip)
	var pieces []string
	for _, id := range ids {
		p, err := d.Add(id)
		if err != nil {
			t.Fatalf("Add(%d): %v", id, err)
		}
		pieces = append(pieces, p)
	}
	return append(pieces, d.Flush())
}

// checkStream asserts the stream's pieces concatenate to Decode and that no
// piece before Flush ends inside a UTF-8 character.
func checkStream(t testing.TB, tk *Tokenizer, ids []int32, skip bool) {
	t.Helper()
	want, err := tk.Decode(ids, skip)
	if err != nil {
		t.Fatal(err)
	}
	pieces := streamAll(t, tk, ids, skip)
	if got := strings.Join(pieces, ""); got != want {
		t.Fatalf("ids %v skip=%v: stream %q != decode %q (pieces %q)", ids, skip, got, want, pieces)
	}
	for _, p := range pieces {
		if !utf8.ValidString(p) {
			t.Fatalf("piece %q is not valid UTF-8", p)
		}
	}
}

func TestStreamDecoder(t *testing.T) {
	g := loadGolden(t)
	for _, name := range fixtures {
		tk := loadFixture(t, name)
		t.Run(name, func(t *testing.T) {
			for _, c := range g[name].Cases {
				for _, skip := range []bool{false, true} {
					checkStream(t, tk, c.IDs, skip)
				}
			}
		})
	}
}

// TestStreamHoldsPartialCharacters: the byte-level tokens of an emoji come
// out as one piece, only once the character is complete.
func TestStreamHoldsPartialCharacters(t *testing.T) {
	cases := []struct {
		name string
		tk   string
		text string
		skip bool
	}{
		{"byte-level emoji", "bytelevel_bpe", "a🤗b", false},
		{"byte-fallback emoji", "metaspace_bpe_bytefallback", "a🤗b", false},
		{"byte-fallback accent", "metaspace_bpe_bytefallback", "café", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk := loadFixture(t, c.tk)
			enc, err := tk.Encode(c.text, false)
			if err != nil {
				t.Fatal(err)
			}
			pieces := streamAll(t, tk, enc.IDs, c.skip)
			for _, p := range pieces {
				if strings.ContainsRune(p, utf8.RuneError) {
					t.Errorf("piece %q contains U+FFFD (pieces %q)", p, pieces)
				}
			}
			if got := strings.Join(pieces, ""); got != c.text {
				t.Errorf("stream %q, want %q", got, c.text)
			}
		})
	}
}

// TestStreamRandomIDs: random id sequences, including special and byte
// tokens, stream to exactly what Decode gives.
func TestStreamRandomIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, name := range fixtures {
		tk := loadFixture(t, name)
		t.Run(name, func(t *testing.T) {
			for range 300 {
				ids := make([]int32, r.IntN(24))
				for i := range ids {
					ids[i] = int32(r.IntN(tk.VocabSize()))
				}
				checkStream(t, tk, ids, r.IntN(2) == 0)
			}
		})
	}
}

// TestStreamReuse: Flush resets the stream.
func TestStreamReuse(t *testing.T) {
	tk := loadFixture(t, "metaspace_bpe_bytefallback")
	d := tk.NewDecoder(true)
	for _, text := range []string{"Hello world", "hello again"} {
		enc, err := tk.Encode(text, true)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for _, id := range enc.IDs {
			p, err := d.Add(id)
			if err != nil {
				t.Fatal(err)
			}
			sb.WriteString(p)
		}
		sb.WriteString(d.Flush())
		if sb.String() != text {
			t.Errorf("stream %q, want %q", sb.String(), text)
		}
	}
}
