package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

const goldenDir = "../../testdata/golden/tokenizers"

type goldenCase struct {
	Text       string   `json:"text"`
	AddSpecial bool     `json:"add_special_tokens"`
	IDs        []int32  `json:"ids"`
	Tokens     []string `json:"tokens"`
	Offsets    [][2]int `json:"offsets"`
	Decoded    string   `json:"decoded"`
	// DecodedWithSpecial is Decode(ids, false); the golden fixtures lack it.
	DecodedWithSpecial *string `json:"decoded_with_special"`
	// PreTokens is the pre-tokenizer's split of the raw text, if recorded.
	PreTokens []string `json:"pretokens"`
}

type goldenSet struct {
	VocabSize int          `json:"vocab_size"`
	Cases     []goldenCase `json:"cases"`
}

func loadGolden(t testing.TB) map[string]goldenSet {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]goldenSet
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func loadFixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tk, err := Load(filepath.Join(goldenDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

var fixtures = []string{"bytelevel_bpe", "metaspace_bpe_bytefallback", "wordpiece_bert"}

// TestGolden checks every golden string of every fixture, with and without
// special tokens, against HF tokenizers 0.23: ids, tokens, offsets, decode.
func TestGolden(t *testing.T) {
	g := loadGolden(t)
	for _, name := range fixtures {
		set, ok := g[name]
		if !ok || len(set.Cases) == 0 {
			t.Fatalf("golden.json has no cases for %s", name)
		}
		tk := loadFixture(t, name)
		t.Run(name, func(t *testing.T) { checkCases(t, tk, set) })
	}
}

// checkCases compares every case's encoding and decoding with the
// reference's, and the vocab size.
func checkCases(t *testing.T, tk *Tokenizer, set goldenSet) {
	t.Helper()
	if got := tk.VocabSize(); got != set.VocabSize {
		t.Errorf("VocabSize = %d, want %d", got, set.VocabSize)
	}
	for i, c := range set.Cases {
		t.Run(fmt.Sprintf("%03d_special=%v_%.20q", i, c.AddSpecial, c.Text), func(t *testing.T) {
			enc, err := tk.Encode(c.Text, c.AddSpecial)
			if err != nil {
				t.Fatal(err)
			}
			if !eqSlice(enc.IDs, c.IDs) {
				t.Errorf("ids\n got %v\nwant %v", enc.IDs, c.IDs)
			}
			if !eqSlice(enc.Tokens, c.Tokens) {
				t.Errorf("tokens\n got %q\nwant %q", enc.Tokens, c.Tokens)
			}
			if !eqSlice(enc.Offsets, c.Offsets) {
				t.Errorf("offsets\n got %v\nwant %v", enc.Offsets, c.Offsets)
			}
			if c.PreTokens != nil {
				if got := preTokens(tk, c.Text); !eqSlice(got, c.PreTokens) {
					t.Errorf("pre-tokens\n got %q\nwant %q", got, c.PreTokens)
				}
			}
			dec, err := tk.Decode(c.IDs, true)
			if err != nil {
				t.Fatal(err)
			}
			if dec != c.Decoded {
				t.Errorf("decode(skip special)\n got %q\nwant %q", dec, c.Decoded)
			}
			if c.DecodedWithSpecial == nil {
				return
			}
			if dec, err = tk.Decode(c.IDs, false); err != nil {
				t.Fatal(err)
			}
			if dec != *c.DecodedWithSpecial {
				t.Errorf("decode(keep special)\n got %q\nwant %q", dec, *c.DecodedWithSpecial)
			}
		})
	}
}

// preTokens runs only the pre-tokenizer on text, as HF's
// pre_tokenize_str does; byte-level pieces are shown in the byte alphabet.
func preTokens(tk *Tokenizer, text string) []string {
	var out []string
	tk.pre.preTokenize(split{n: identity(text, 0)}, func(x split) {
		if x.byteLevel {
			out = append(out, toByteAlphabet(x.n.s))
		} else {
			out = append(out, x.n.s)
		}
	})
	return out
}

func eqSlice[T any](a, b []T) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
