package guide

import (
	"encoding/json"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/tessera-llm/tessera/coordinator/guide/guidetest"
)

// compiled checks what compiling a fuzzed constraint may do: succeed, or
// fail with one of the package's errors. It returns the automaton, or nil.
func compiled(t *testing.T, spec Spec) (*dfa, int32) {
	d, start, err := spec.automaton()
	if err != nil {
		for _, e := range []error{ErrInvalid, ErrUnsupported, ErrTooLarge, ErrUnsatisfiable} {
			if errors.Is(err, e) {
				return nil, 0
			}
		}
		t.Fatalf("compile: an error outside the package's: %v", err)
	}
	return d, start
}

// walks spells a few random matches of d, with a generator seeded by the
// input so that a failure reproduces.
func walks(t *testing.T, d *dfa, start int32, seed string, n int, check func([]byte)) {
	h := fnv.New64a()
	h.Write([]byte(seed))
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	defer delete(liveCache, d)
	for range n {
		if out, ok := walk(t, d, start, rng, 0.3); ok {
			check(out)
		}
	}
}

// The regex compiler agrees with Go's regexp: on the fuzzed text, and on
// random matches of the automaton.
func FuzzRegex(f *testing.F) {
	_, regexes := guidetest.Seeds(100)
	for _, p := range regexes {
		f.Add(p, []byte("ab7"))
	}
	f.Add(`(?i)straße|[α-ω]+`, []byte("STRASSE"))
	f.Add(`a{1000}{1000}`, []byte("a"))
	f.Add(`\Q`, []byte("")) // a quote with no \E runs to the end of the pattern
	f.Add(`a\Q)|b`, []byte("a)|b"))
	f.Fuzz(func(t *testing.T, pattern string, text []byte) {
		d, start := compiled(t, Spec{Kind: Regex, Pattern: pattern})
		if d == nil {
			return
		}
		fullMatch, err := guidetest.FullMatcher(pattern)
		if err != nil {
			t.Fatalf("the guide compiled %q, which Go's regexp refuses: %v", pattern, err)
		}
		if utf8.Valid(text) { // Go's regexp reads invalid bytes as U+FFFD; the automaton never matches them
			got, err := d.matches(start, text)
			if err != nil {
				return // past the state limit
			}
			if got != fullMatch(text) {
				t.Fatalf("%q on %q: automaton %v, regexp %v", pattern, text, got, !got)
			}
		}
		walks(t, d, start, pattern, 5, func(out []byte) {
			if !utf8.Valid(out) || !fullMatch(out) {
				t.Fatalf("%q generated %q, which regexp does not match", pattern, out)
			}
		})
	})
}

// Random matches of a compiled schema are instances of it by an
// independent validator.
func FuzzSchema(f *testing.F) {
	generated, _ := guidetest.Seeds(100)
	for _, s := range append(generated, schemas...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, schema string) {
		d, start := compiled(t, Spec{Kind: JSONSchema, Schema: json.RawMessage(schema)})
		if d == nil {
			return
		}
		valid, err := guidetest.SchemaValidator(schema)
		if err != nil {
			return // the reference refuses what the guide accepts: a looser reading, not an invalid output
		}
		walks(t, d, start, schema, 5, func(out []byte) {
			if err := valid(out); err != nil {
				t.Fatalf("%s generated %s: %v", schema, out, err)
			}
		})
	})
}
