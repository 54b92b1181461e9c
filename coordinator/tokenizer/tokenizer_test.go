package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// patchFixture loads a fixture's JSON, applies edit to the decoded object
// and returns the re-encoded bytes.
func patchFixture(t *testing.T, name string, edit func(m map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func modelOf(m map[string]any) map[string]any { return m["model"].(map[string]any) }

func TestMalformed(t *testing.T) {
	cases := []struct {
		name    string
		json    func(t *testing.T) []byte
		want    error
		mention string
	}{
		{"not json", func(*testing.T) []byte { return []byte("{not json") }, ErrMalformed, "malformed"},
		{"unknown model type", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { modelOf(m)["type"] = "Transformer9000" })
		}, ErrUnknownType, `"Transformer9000"`},
		{"missing vocab", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { delete(modelOf(m), "vocab") })
		}, ErrMissingVocab, "vocab"},
		{"no model", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { delete(m, "model") })
		}, ErrMissingVocab, "no model"},
		{"merge token not in vocab", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) {
				modelOf(m)["merges"] = []any{[]any{"Ġ", "Ġ"}, []any{"Ġ", "zzz-not-a-token"}}
			})
		}, ErrBadMerges, `"zzz-not-a-token" is not in the vocab`},
		{"merge string without space", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { modelOf(m)["merges"] = []any{"ĠĠ"} })
		}, ErrBadMerges, "not two space-separated tokens"},
		{"merge is not a pair", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { modelOf(m)["merges"] = []any{[]any{"a", "b", "c"}} })
		}, ErrBadMerges, "not a pair"},
		{"merges not a list", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { modelOf(m)["merges"] = 7 })
		}, ErrBadMerges, "must be a list"},
		{"merge result not in vocab", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) { modelOf(m)["merges"] = []any{"a <unk>"} })
		}, ErrBadMerges, `result "a<unk>"`},
		{"unk token not in vocab", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { modelOf(m)["unk_token"] = "[NOPE]" })
		}, ErrMissingVocab, `"[NOPE]"`},
		{"unknown normalizer", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "Sparkle"} })
		}, ErrUnknownType, `normalizer type "Sparkle"`},
		{"unknown pre-tokenizer", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Nope"} })
		}, ErrUnknownType, `pre_tokenizer type "Nope"`},
		{"unknown decoder in sequence", func(t *testing.T) []byte {
			return patchFixture(t, "metaspace_bpe_bytefallback", func(m map[string]any) {
				m["decoder"] = map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "Fuse"}, map[string]any{"type": "Mystery"}}}
			})
		}, ErrUnknownType, `decoders[1]: unknown component type: decoder type "Mystery"`},
		{"unknown post-processor", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { m["post_processor"] = map[string]any{"type": "Glitter"} })
		}, ErrUnknownType, `post_processor type "Glitter"`},
		{"component without type", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { m["decoder"] = map[string]any{"prefix": "##"} })
		}, ErrMalformed, `no "type"`},
		{"template names undefined special", func(t *testing.T) []byte {
			return patchFixture(t, "metaspace_bpe_bytefallback", func(m map[string]any) {
				m["post_processor"].(map[string]any)["special_tokens"] = map[string]any{}
			})
		}, ErrMalformed, `"<s>" is not defined`},
		{"regex with look-ahead", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) {
				m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+(?!\S)`}, "behavior": "Isolated"}
			})
		}, ErrUnsupported, "look-around"},
		{"regex with a syntax error", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) {
				m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `[a-z`}, "behavior": "Isolated"}
			})
		}, ErrMalformed, "missing closing ]"},
		{"bad split behavior", func(t *testing.T) []byte {
			return patchFixture(t, "bytelevel_bpe", func(m map[string]any) {
				m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Sideways"}
			})
		}, ErrMalformed, `"Sideways"`},
		{"negative vocab id", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { modelOf(m)["vocab"].(map[string]any)["[UNK]"] = -5 })
		}, ErrMalformed, "negative id"},
		{"sparse vocab ids", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) { modelOf(m)["vocab"].(map[string]any)["[UNK]"] = 1 << 30 })
		}, ErrMalformed, "sparse"},
		{"empty added token", func(t *testing.T) []byte {
			return patchFixture(t, "wordpiece_bert", func(m map[string]any) {
				m["added_tokens"] = append(m["added_tokens"].([]any), map[string]any{"id": 900, "content": ""})
			})
		}, ErrMalformed, "empty content"},
		{"unigram vocab entry not a pair", func(*testing.T) []byte {
			return []byte(`{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["a"]]}}`)
		}, ErrMalformed, "vocab[1]"},
		{"unigram unk_id outside vocab", func(*testing.T) []byte {
			return []byte(`{"model":{"type":"Unigram","unk_id":5,"vocab":[["<unk>",0]]}}`)
		}, ErrMissingVocab, "unk_id 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk, err := FromJSON(c.json(t))
			if err == nil {
				t.Fatalf("FromJSON succeeded (%v); want %v", tk != nil, c.want)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %q is not %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestTokenIDAndDecodeErrors(t *testing.T) {
	tk := loadFixture(t, "wordpiece_bert")
	cases := []struct {
		tok  string
		id   int32
		want bool
	}{
		{"[CLS]", 2, true},
		{"[MASK]", 4, true},
		{"##ive", 745, true},
		{"definitely-not-a-token", 0, false},
	}
	for _, c := range cases {
		t.Run(c.tok, func(t *testing.T) {
			id, ok := tk.TokenID(c.tok)
			if ok != c.want || (ok && id != c.id) {
				t.Errorf("TokenID(%q) = %d, %v; want %d, %v", c.tok, id, ok, c.id, c.want)
			}
		})
	}
	for _, id := range []int32{-1, 800, 1 << 30} {
		if _, err := tk.Decode([]int32{5, id}, false); !errors.Is(err, ErrUnknownID) {
			t.Errorf("Decode with id %d: err %v, want ErrUnknownID", id, err)
		}
		if _, err := tk.NewDecoder(false).Add(id); !errors.Is(err, ErrUnknownID) {
			t.Errorf("StreamDecoder.Add(%d): err %v, want ErrUnknownID", id, err)
		}
	}
}

func TestDecodeSkipSpecial(t *testing.T) {
	ms := loadFixture(t, "metaspace_bpe_bytefallback")
	wp := loadFixture(t, "wordpiece_bert")
	enc, err := ms.Encode("café 🤗", true)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		tk   *Tokenizer
		ids  []int32
		skip bool
		want string
	}{
		{"byte tokens decode when kept", ms, enc.IDs, false, "<s> café 🤗"},
		{"special byte tokens are dropped", ms, enc.IDs, true, "caf "},
		{"bert specials kept", wp, []int32{2, 612, 3}, false, "[CLS]el [SEP]"},                       // 612 is "##el"
		{"bert specials dropped", wp, []int32{2, 612, 3}, true, "##el"},                              // first token keeps its ##
		{"wordpiece cleanup is per token", wp, []int32{46, 529, 11, 62, 30, 5}, false, "don ' t :!"}, // d ##on ' t : !
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.tk.Decode(c.ids, c.skip)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Decode = %q, want %q", got, c.want)
			}
		})
	}
}

// TestConcurrentEncode: one Tokenizer shared by goroutines (the word cache
// and the scratch free list are shared) gives every caller the same result
// as a serial run. Run with -race.
func TestConcurrentEncode(t *testing.T) {
	texts := []string{mixedText(4 << 10), "Hello world", "天空是湛蓝色的", mixedText(1 << 10), ""}
	for _, name := range fixtures {
		tk := loadFixture(t, name)
		want := make([]*Encoding, len(texts))
		for i, s := range texts {
			var err error
			if want[i], err = tk.Encode(s, true); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan string, 64)
		for g := range 8 {
			wg.Go(func() {
				for k := range 20 {
					i := (g + k) % len(texts)
					got, err := tk.Encode(texts[i], true)
					if err != nil || !reflect.DeepEqual(got, want[i]) {
						errs <- fmt.Sprintf("%s: goroutine %d text %d differs (err %v)", name, g, i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
}
