package guide

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/tessera-llm/tessera/shard/topk"
)

// syntheticVocab is a byte-level vocabulary of n tokens shaped like a BPE
// one: the 256 single bytes, then pieces of 2 to 12 bytes drawn from
// English-like text, code and JSON punctuation, with a leading space on
// half of them and some multi-byte characters, so that prefixes are
// shared as in a real vocabulary.
func syntheticVocab(n int) *Vocab {
	rng := rand.New(rand.NewPCG(uint64(n), 19))
	const letters = "etaoinshrdlucmfwypvbgkjqxz"
	punct := []string{`"`, `{`, `}`, `:`, `,`, `[`, `]`, `_`, `.`, `(`, `)`, `\n`, `\`, `-`, `=`, `0`, `1`, `2`, `9`, "é", "中", "—"}
	seen := map[string]bool{}
	pieces := make([][]byte, 0, n)
	for b := range 256 {
		pieces = append(pieces, []byte{byte(b)})
	}
	for len(pieces) < n {
		var p []byte
		if rng.IntN(2) == 0 {
			p = append(p, ' ')
		}
		for l := 2 + rng.IntN(11); len(p) < l; {
			if rng.IntN(6) == 0 {
				p = append(p, punct[rng.IntN(len(punct))]...)
			} else {
				// Zipf-like letters, so that common prefixes repeat.
				p = append(p, letters[min(rng.IntN(len(letters)), rng.IntN(len(letters)))])
			}
		}
		if !utf8.Valid(p) || seen[string(p)] {
			continue
		}
		seen[string(p)] = true
		pieces = append(pieces, p)
	}
	eos := int32(n) // one column past the pieces, as models pad their vocabulary
	return NewVocab(n+1, func(id int32) ([]byte, bool) {
		if int(id) >= len(pieces) {
			return nil, false
		}
		return pieces[id], true
	}, []int32{eos})
}

// benchSchema is a typical structured-output schema: free text, an enum,
// numbers, a bounded array.
const benchSchema = `{"type":"object","properties":{"name":{"type":"string"},"kind":{"enum":["person","place","thing"]},` +
	`"score":{"type":"number"},"tags":{"type":"array","items":{"type":"string"},"maxItems":4},"ok":{"type":"boolean"}},` +
	`"required":["name","kind","score","tags","ok"]}`

// BenchmarkMask measures what constrained decoding costs per generated
// token, at vocabularies of 32k and 150k tokens:
//   - cold: the mask of a state that no sequence visited before (a walk
//     of the whole vocabulary, with the DFA's transitions already built),
//   - warm: the mask of a state already visited (the cache),
//   - advance: moving the state by the sampled token,
//   - apply: a rank clearing the disallowed logits of one row of its
//     vocabulary slice (topk.Mask), for the whole row (tp=1) and half (tp=2).
//
// Each reports ns/step; "mask-bytes" is what a step carries per
// constrained sequence to every last-stage rank.
func BenchmarkMask(b *testing.B) {
	for _, n := range []int{32000, 150000} {
		v := syntheticVocab(n)
		m, err := NewMatcher(Spec{Kind: JSONSchema, Schema: json.RawMessage(benchSchema)}, v)
		if err != nil {
			b.Fatal(err)
		}
		// The states of a few generations, visited once so that the DFA
		// holds their transitions.
		rng := rand.New(rand.NewPCG(1, 2))
		var states []State
		var tokens []int32
		for range 8 {
			s := m.Start()
			for range 96 {
				mask, err := m.Allowed(s)
				if err != nil {
					b.Fatal(err)
				}
				id := pick(rng, mask)
				if v.isEOS(id) {
					break
				}
				states, tokens = append(states, s), append(tokens, id)
				if s, err = m.Advance(s, id); err != nil {
					b.Fatal(err)
				}
			}
		}
		name := fmt.Sprintf("vocab=%dk", n/1000)
		b.Run(name+"/cold", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				clear(m.masks)
				if _, err := m.Allowed(states[i%len(states)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(v.Size()+7)/8, "mask-bytes")
		})
		b.Run(name+"/warm", func(b *testing.B) {
			for _, s := range states {
				if _, err := m.Allowed(s); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; b.Loop(); i++ {
				if _, err := m.Allowed(states[i%len(states)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/advance", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := m.Advance(states[i%len(states)], tokens[i%len(tokens)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		mask, err := m.Allowed(states[len(states)/2])
		if err != nil {
			b.Fatal(err)
		}
		logits := make([]float32, v.Size())
		for _, tp := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/apply-tp%d", name, tp), func(b *testing.B) {
				slice := logits[:v.Size()/tp]
				for b.Loop() {
					topk.Mask(slice, 0, mask.Bits)
				}
			})
		}
	}
}

// pick is a random allowed token.
func pick(rng *rand.Rand, m *Mask) int32 {
	k := rng.IntN(m.N)
	for id := int32(0); ; id++ {
		if m.Has(id) {
			if k == 0 {
				return id
			}
			k--
		}
	}
}
