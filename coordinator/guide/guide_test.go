package guide

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSpec builds the automaton of a spec, failing the test on error.
func compileSpec(t testing.TB, s Spec) (*dfa, int32) {
	t.Helper()
	d, start, err := s.automaton()
	if err != nil {
		t.Fatalf("compile %s%s: %v", s.Pattern, s.Schema, err)
	}
	return d, start
}

// run feeds text to the DFA and reports whether it is a whole match.
func run(t testing.TB, d *dfa, start int32, text []byte) bool {
	t.Helper()
	s := start
	for _, c := range text {
		var err error
		if s, err = d.step(s, c); err != nil {
			t.Fatal(err)
		}
		if s == dead {
			return false
		}
	}
	return d.accept[s]
}

// walk generates a random match: at each state it either stops (when the
// state accepts) or takes a random live byte. Every state can reach a
// match, so a walk never dead-ends; long walks are abandoned.
func walk(t testing.TB, d *dfa, start int32, rng *rand.Rand, stop float64) ([]byte, bool) {
	t.Helper()
	var out []byte
	s := start
	for len(out) < 2000 {
		if d.accept[s] && rng.Float64() < stop {
			return out, true
		}
		live := liveBytes(t, d, s)
		if len(live) == 0 {
			if !d.accept[s] {
				t.Fatalf("state %d after %q is a dead end", s, out)
			}
			return out, true
		}
		c := live[rng.IntN(len(live))]
		out = append(out, c)
		s = d.trans[s][c]
	}
	return out, false
}

// liveBytes lists the bytes that do not kill state s (cached per DFA).
func liveBytes(t testing.TB, d *dfa, s int32) []byte {
	if live, ok := liveCache[d][s]; ok {
		return live
	}
	live := []byte{}
	for c := range 256 {
		n, err := d.step(s, byte(c))
		if err != nil {
			t.Fatal(err)
		}
		if n != dead {
			live = append(live, byte(c))
		}
	}
	if liveCache[d] == nil {
		liveCache[d] = map[int32][]byte{}
	}
	liveCache[d][s] = live
	return live
}

var liveCache = map[*dfa]map[int32][]byte{}

func TestRegexAgreesWithGoRegexp(t *testing.T) {
	patterns := []string{
		`abc`, `a|b|cd`, `(ab)*c`, `a+b?`, `[a-c]{2,4}`, `x{3}`, `(?i)hello`, `[^a-z]`,
		`\d+(\.\d+)?`, `.`, `[α-ω]+`, `(?i)straße`, `[\x{1F600}-\x{1F64F}]{1,2}`, `\p{Han}+`,
		`^yes|no$`, `(foo|foobar)(bar)?`, `[^\n]*`, `\w+@\w+\.com`, `(a|ab)(c|bcd)(d*)`,
		`[\x{80}-\x{10FFFF}]`, `\s*`, `colou?r`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcdfhoxry019.@ \nαβωÄßSs中文😀😃\x00")
	for _, p := range patterns {
		t.Run(p, func(t *testing.T) {
			d, start := compileSpec(t, Spec{Kind: Regex, Pattern: p})
			want := regexp.MustCompile(`^(?:` + strings.TrimSuffix(strings.TrimPrefix(p, "^"), "$") + `)$`)
			if p == `^yes|no$` {
				want = regexp.MustCompile(`^(?:yes|no)$`)
			}
			check := func(s string) {
				if got := run(t, d, start, []byte(s)); got != want.MatchString(s) {
					t.Fatalf("%q: automaton %v, regexp %v", s, got, !got)
				}
			}
			for range 400 {
				n := rng.IntN(8)
				var b strings.Builder
				for range n {
					b.WriteRune(alphabet[rng.IntN(len(alphabet))])
				}
				check(b.String())
			}
			// Random matches must be matches, and valid UTF-8.
			for range 100 {
				out, ok := walk(t, d, start, rng, 0.3)
				if !ok {
					continue
				}
				if !utf8.Valid(out) || !want.Match(out) {
					t.Fatalf("generated %q, which %v does not match", out, want)
				}
			}
		})
	}
}

func TestUTF8Sequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		lo := rune(rng.IntN(0x110000))
		hi := lo + rune(rng.IntN(0x3000))
		var seqs [][]byteRange
		utf8Sequences(lo, hi, func(s []byteRange) { seqs = append(seqs, append([]byteRange(nil), s...)) })
		in := func(b []byte) bool {
			for _, s := range seqs {
				if len(s) != len(b) {
					continue
				}
				ok := true
				for i := range s {
					ok = ok && s[i].lo <= b[i] && b[i] <= s[i].hi
				}
				if ok {
					return true
				}
			}
			return false
		}
		for range 50 {
			r := lo - 100 + rune(rng.IntN(int(hi-lo)+200))
			if r < 0 || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF) {
				continue
			}
			b := utf8.AppendRune(nil, r)
			if got, want := in(b), r >= lo && r <= hi; got != want {
				t.Fatalf("[%#x, %#x]: rune %#x in sequences = %v", lo, hi, r, got)
			}
		}
	}
}

// validator compiles a schema with an independent JSON Schema library.
func validator(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("reference compiler: %v", err)
	}
	return s
}

func validate(t testing.TB, v *jsonschema.Schema, out []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return v.Validate(inst)
}

var schemas = []string{
	`{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer"}},"required":["name"]}`,
	`{"type":"array","items":{"enum":["a","b",3,null]},"minItems":1,"maxItems":4}`,
	`{"anyOf":[{"type":"string","pattern":"^[a-z]+\"x$"},{"type":"number"}]}`,
	`{"type":"object","properties":{"when":{"type":"string","format":"date-time"},"id":{"type":"string","format":"uuid"}},"required":["when","id"],"additionalProperties":false}`,
	`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/node"}},"required":["v"]}},"$ref":"#/$defs/node"}`,
	`{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"null"},"c":{"const":{"x":[1,2]}}}}`,
	`{"type":["string","null"],"minLength":2,"maxLength":3}`,
	`{"type":"object"}`,
	`{"properties":{"a":{"type":"null"}},"required":["a","b"],"additionalProperties":{"type":"integer"}}`,
	`{"type":"object","additionalProperties":{"type":"integer"}}`,
	`true`,
	`{"type":"object","properties":{"tags":{"type":"array","items":{"type":"string","pattern":"[0-9]"}}},"required":["tags"]}`,
	`{"enum":[12345678901234567890,1e2,-0.1],"const":12345678901234567890}`,
	`{"type":"string","enum":["a",1,true]}`,
	`{"type":"integer","enum":[1.5,2,"2"]}`,
	`{"type":"string","maxLength":1,"enum":["a","bb",3]}`,
	`{"type":"array","items":{"type":"integer"},"enum":[[1],["x"]]}`,
	`{"oneOf":[{"type":"integer"},{"type":"string","maxLength":2},{"type":"object","properties":{"k":{"const":"a"},"v":{"type":"integer"}},"required":["k"]},{"type":"object","properties":{"k":{"enum":["b","c"]}},"required":["k","w"]}]}`,
}

func TestSchemaOutputsValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i, s := range schemas {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			v := validator(t, s)
			d, start := compileSpec(t, Spec{Kind: JSONSchema, Schema: json.RawMessage(s)})
			n := 0
			for range 200 {
				out, ok := walk(t, d, start, rng, 0.2)
				if !ok {
					continue
				}
				n++
				if err := validate(t, v, out); err != nil {
					t.Fatalf("generated %s: %v", out, err)
				}
			}
			if n < 50 {
				t.Fatalf("only %d of 200 walks finished", n)
			}
		})
	}
}

// A surrogate pair is two escapes but one character: minLength 2 must not
// count it twice, so escapes of surrogates are not generated at all.
func TestSurrogateEscapes(t *testing.T) {
	const schema = `{"type":"string","minLength":2,"maxLength":2}`
	v := validator(t, schema)
	d, start := compileSpec(t, Spec{Kind: JSONSchema, Schema: json.RawMessage(schema)})
	for _, text := range []string{`"\ud83d\ude00"`, `"\uD800a"`} {
		if run(t, d, start, []byte(text)) {
			t.Errorf("%s matched (the validator says %v)", text, validate(t, v, []byte(text)))
		}
	}
	for _, text := range []string{`"\u00e9\uFFFF"`, `"😀a"`} {
		if !run(t, d, start, []byte(text)) {
			t.Errorf("%s did not match", text)
		}
	}
}

func TestSchemaRejectsInvalidInstances(t *testing.T) {
	d, start := compileSpec(t, Spec{Kind: JSONSchema, Schema: json.RawMessage(schemas[0])})
	for _, bad := range []string{`{"age":3}`, `{"name":"abcdefghij"}`, `{"name":1}`, `{"name":"x",}`, `[]`} {
		if run(t, d, start, []byte(bad)) {
			t.Errorf("%s matched", bad)
		}
	}
	for _, good := range []string{`{"name":"x"}`, `{"name": "x", "age": -3}`, `{ "name":"\u00e9\n" }`} {
		if !run(t, d, start, []byte(good)) {
			t.Errorf("%s did not match", good)
		}
	}
}

func TestJSONObjectAndChoice(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d, start := compileSpec(t, Spec{Kind: JSONObject})
	for range 200 {
		out, ok := walk(t, d, start, rng, 0.3)
		if !ok {
			continue
		}
		var v map[string]any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("json_object generated %s: %v", out, err)
		}
	}
	d, start = compileSpec(t, Spec{Kind: Choice, Choices: []string{"yes", "no", "a.b*"}})
	for _, c := range []string{"yes", "no", "a.b*"} {
		if !run(t, d, start, []byte(c)) {
			t.Errorf("choice %q refused", c)
		}
	}
	for _, c := range []string{"ye", "yesno", "a.bb", ""} {
		if run(t, d, start, []byte(c)) {
			t.Errorf("%q accepted", c)
		}
	}
}

func TestRefusals(t *testing.T) {
	deep := strings.Repeat(`{"type":"array","items":`, 80) + `{}` + strings.Repeat(`}`, 80)
	enum := make([]string, 50000)
	for i := range enum {
		enum[i] = fmt.Sprintf(`"value-%d-%s"`, i, strings.Repeat("x", 40))
	}
	cases := []struct {
		name string
		spec Spec
		want error
	}{
		{"regex syntax", Spec{Kind: Regex, Pattern: `a(b`}, ErrInvalid},
		{"inner anchor", Spec{Kind: Regex, Pattern: `a^b`}, ErrUnsupported},
		{"word boundary", Spec{Kind: Regex, Pattern: `a\bb`}, ErrUnsupported},
		{"regex too long", Spec{Kind: Regex, Pattern: strings.Repeat("a", maxPattern+1)}, ErrTooLarge},
		{"repeat bomb", Spec{Kind: Regex, Pattern: `((a{100}){100}){100}`}, ErrTooLarge},
		{"empty class", Spec{Kind: Regex, Pattern: `[^\x00-\x{10FFFF}]`}, ErrUnsatisfiable},
		{"lengths", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","minLength":5,"maxLength":2}`)}, ErrUnsatisfiable},
		{"empty enum", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"enum":[]}`)}, ErrUnsatisfiable},
		{"enum of other types", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","enum":[1,true]}`)}, ErrUnsatisfiable},
		{"const outside enum", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"enum":[1,"x"],"const":2}`)}, ErrUnsatisfiable},
		{"required but not allowed", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"required":["a"],"additionalProperties":false}`)}, ErrUnsatisfiable},
		{"required false", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"properties":{"a":false},"required":["a"]}`)}, ErrUnsatisfiable},
		{"infinite ref", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"object","properties":{"x":{"$ref":"#"}},"required":["x"]}`)}, ErrUnsatisfiable},
		{"pattern and length", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","pattern":"^[a-z]+$","maxLength":2}`)}, ErrUnsupported},
		{"format and length", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","format":"date","minLength":12}`)}, ErrUnsupported},
		{"anyOf and type", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","anyOf":[{"type":"integer"},{"type":"string"}]}`)}, ErrUnsupported},
		{"oneOf and properties", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"properties":{"a":{"type":"integer"}},"oneOf":[{"required":["a"]},{"required":["b"]}]}`)}, ErrUnsupported},
		{"oneOf overlapping", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"oneOf":[{"type":"string"},{"type":"string","maxLength":2}]}`)}, ErrUnsupported},
		{"oneOf untyped", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"oneOf":[{"type":"integer"},{"properties":{"a":{"type":"string"}},"required":["a"]}]}`)}, ErrUnsupported},
		{"oneOf untagged", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"oneOf":[{"type":"object","properties":{"a":{}},"required":["a"]},{"type":"object","properties":{"b":{}}}]}`)}, ErrUnsupported},
		{"oneOf integer and number", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"oneOf":[{"type":"integer"},{"type":"number"}]}`)}, ErrUnsupported},
		{"minimum", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"integer","minimum":3}`)}, ErrUnsupported},
		{"enum not a list", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"string","enum":"a"}`)}, ErrInvalid},
		{"not JSON", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":`)}, ErrInvalid},
		{"bad type", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"int"}`)}, ErrInvalid},
		{"dangling ref", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"$ref":"#/$defs/nope"}`)}, ErrInvalid},
		{"remote ref", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"$ref":"http://example.com/s.json"}`)}, ErrUnsupported},
		{"deep nesting", Spec{Kind: JSONSchema, Schema: json.RawMessage(deep)}, ErrTooLarge},
		{"huge enum", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"enum":[` + strings.Join(enum, ",") + `]}`)}, ErrTooLarge},
		{"big maxItems", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"array","maxItems":100000}`)}, ErrTooLarge},
		{"no choices", Spec{Kind: Choice}, ErrUnsatisfiable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.spec.automaton()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// Constraints built to be expensive fail with ErrTooLarge (or as invalid
// syntax) within the limits: the memory compiling one allocates stays
// bounded, whatever the constraint asks for.
func TestBombsBounded(t *testing.T) {
	list := func(n int, format string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf(format, i)
		}
		return out
	}
	object := func(members []string) json.RawMessage {
		return json.RawMessage(`{"type":"object","properties":{` + strings.Join(members, ",") + `}}`)
	}
	cases := []struct {
		name string
		spec Spec
		want error
	}{
		// Optional properties compile to suffixes quadratic in their
		// number; 5000 used to allocate half a gigabyte before the limit.
		{"wide object", Spec{Kind: JSONSchema, Schema: object(list(5000, `"p%d":{"type":"null"}`))}, ErrTooLarge},
		{"huge enum", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"enum":[` + strings.Join(list(60000, `"v%d-xxxxxxxxxxxxxxxx"`), ",") + `]}`)}, ErrTooLarge},
		{"wide oneOf", Spec{Kind: JSONSchema, Schema: json.RawMessage(`{"oneOf":[` + strings.Join(list(300, `{"const":%d}`), ",") + `]}`)}, ErrTooLarge},
		{"deep nesting", Spec{Kind: JSONSchema, Schema: json.RawMessage(strings.Repeat(`{"anyOf":[{"type":"integer"},{"type":"array","items":`, 40) + `{}` + strings.Repeat(`}]}`, 40))}, ErrTooLarge},
		{"nested minItems", Spec{Kind: JSONSchema, Schema: json.RawMessage(strings.Repeat(`{"type":"array","minItems":64,"items":`, 6) + `{"type":"string","maxLength":64}` + strings.Repeat(`}`, 6))}, ErrTooLarge},
		{"wide alternation", Spec{Kind: Regex, Pattern: strings.Join(list(3000, "w%d"), "|")}, ErrTooLarge},
		{"many choices", Spec{Kind: Choice, Choices: list(3000, "choice %d")}, ErrTooLarge},
		{"repeat of repeat", Spec{Kind: Regex, Pattern: `a{1000}{1000}`}, ErrInvalid},
		{"nested repeats", Spec{Kind: Regex, Pattern: `(a{1000}){1000}`}, ErrTooLarge},
		{"repeated letters", Spec{Kind: Regex, Pattern: `\pL{1000}`}, ErrTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			_, _, err := c.spec.automaton()
			runtime.ReadMemStats(&ms)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if used := ms.TotalAlloc - before; used > 128<<20 {
				t.Fatalf("refusing allocated %d MiB", used>>20)
			}
		})
	}
}

// A pattern whose DFA is exponential is built only as far as generation
// goes, and a walk past maxStates fails with ErrTooLarge instead of
// growing.
func TestLazyDFABounded(t *testing.T) {
	// The 16th byte from the end must be 'a': 2^16 DFA states.
	const pattern = `[ab]*a[ab]{15}`
	rng := rand.New(rand.NewPCG(13, 14))
	pieces := make([]string, 512)
	for i := range pieces {
		var b strings.Builder
		for range 8 + rng.IntN(24) {
			b.WriteByte("ab"[rng.IntN(2)])
		}
		pieces[i] = b.String()
	}
	v := NewVocab(len(pieces), func(id int32) ([]byte, bool) { return []byte(pieces[id]), true }, nil)
	m, err := NewMatcher(Spec{Kind: Regex, Pattern: pattern}, v)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Start()
	for step := 0; ; step++ {
		if _, err = m.Allowed(s); err != nil {
			break
		}
		if s, err = m.Advance(s, int32(rng.IntN(len(pieces)))); err != nil {
			break
		}
		if step > 1e5 {
			t.Fatal("the walk never reached the state limit")
		}
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if n := len(m.d.sets); n > maxStates {
		t.Fatalf("%d states built; the limit is %d", n, maxStates)
	}
}

// A small pattern over large classes makes DFA states of a hundred
// thousand NFA nodes each; building them stops at the work and memory
// bounds, here made small, with ErrTooLarge.
func TestDFAWorkBounded(t *testing.T) {
	re, err := syntax.Parse(`(\pL*\pN*\pP*){20}`, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	n, err := compileRegexp(re.Simplify(), maxNodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		small int
		b     dfaBounds
		used  func(d *dfa) int
	}{
		{"work", 1 << 22, dfaBounds{states: maxStates, work: 1 << 22, held: maxHeld}, func(d *dfa) int { return d.work }},
		{"held", 1 << 16, dfaBounds{states: maxStates, work: maxWork, held: 1 << 16}, func(d *dfa) int { return d.held }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, s, err := newDFA(n, c.b)
			if err != nil {
				t.Fatal(err)
			}
			// Build every state: all the bytes from every state reached.
			queue, seen := []int32{s}, map[int32]bool{s: true}
			for len(queue) > 0 {
				at := queue[0]
				queue = queue[1:]
				for b := range 256 {
					next, err := d.step(at, byte(b))
					if err != nil {
						if !errors.Is(err, ErrTooLarge) {
							t.Fatalf("got %v, want ErrTooLarge", err)
						}
						if c.used(d) > 2*c.small {
							t.Fatalf("%d used for a bound of %d", c.used(d), c.small)
						}
						return
					}
					if next != dead && !seen[next] {
						seen[next] = true
						queue = append(queue, next)
					}
				}
			}
			t.Fatalf("the whole DFA, %d states, within a bound of %d", len(d.sets), c.small)
		})
	}
}

// testVocab is a small vocabulary with multi-byte, partial-UTF-8 and
// shared-prefix tokens. Like a real one (byte-level BPE, byte fallback) it
// spells every byte the test constraints need one by one.
func testVocab() *Vocab {
	pieces := []string{"<eos>", "{", "}", "\"", "\"na", "name", "me\"", ":", " ", ": ", ",", "1", "12", "-", "a", "ab", "abc",
		"true", "tr", "ue", "null", "\xe4\xb8", "\xad", "中", "\"\"", "[", "]", "x", "yes", "no", "n", "o", "e", "s", "y", "b", "c", "m", "\\", "u", "\x00"}
	return NewVocab(len(pieces)+3, func(id int32) ([]byte, bool) {
		if int(id) >= len(pieces) {
			return nil, false // columns past the tokenizer: padding
		}
		return []byte(pieces[id]), true
	}, []int32{0})
}

func TestMaskMatchesBruteForce(t *testing.T) {
	v := testVocab()
	rng := rand.New(rand.NewPCG(9, 10))
	for _, spec := range []Spec{
		{Kind: JSONSchema, Schema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}`)},
		{Kind: Choice, Choices: []string{"yes", "no", "中"}},
		{Kind: Regex, Pattern: `(ab|x)*1?`},
	} {
		m, err := NewMatcher(spec, v)
		if err != nil {
			t.Fatal(err)
		}
		// Follow random allowed tokens; at every state compare the mask
		// with a token-by-token check.
		for range 20 {
			s := m.Start()
			for step := 0; step < 30; step++ {
				mask, err := m.Allowed(s)
				if err != nil {
					t.Fatal(err)
				}
				var allowed []int32
				for id := range int32(v.size) {
					want := false
					if v.isEOS(id) {
						want = m.Complete(s)
					} else if p := v.pieces[id]; p != nil {
						st := int32(s)
						for _, c := range p {
							if st, _ = m.d.step(st, c); st == dead {
								break
							}
						}
						want = st != dead
					}
					if mask.Has(id) != want {
						t.Fatalf("%+v: state %d token %d (%q): mask %v, want %v", spec, s, id, v.pieces[id], mask.Has(id), want)
					}
					if want {
						allowed = append(allowed, id)
					}
				}
				if mask.N != len(allowed) || ones(mask) != mask.N {
					t.Fatalf("mask count %d / %d, want %d", mask.N, ones(mask), len(allowed))
				}
				if len(allowed) == 0 {
					t.Fatalf("%+v: state %d allows nothing", spec, s)
				}
				id := allowed[rng.IntN(len(allowed))]
				if v.isEOS(id) {
					break
				}
				if s, err = m.Advance(s, id); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestAdvanceRefusesMaskedTokens(t *testing.T) {
	m, err := NewMatcher(Spec{Kind: Choice, Choices: []string{"yes"}}, testVocab())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Advance(m.Start(), 28+1); err == nil { // "no"
		t.Fatal("advancing by a token outside the mask succeeded")
	}
	s, err := m.Advance(m.Start(), 28) // "yes"
	if err != nil {
		t.Fatal(err)
	}
	if final, err := m.Final(s); err != nil || !final {
		t.Fatalf("after the only choice: final %v, %v", final, err)
	}
	if _, err := NewMatcher(Spec{Kind: Choice, Choices: []string{"zzz"}}, testVocab()); !errors.Is(err, ErrUnsatisfiable) {
		t.Fatalf("a choice no token can spell: %v", err)
	}
}

// ones counts the mask's set bits, independently of its N.
func ones(m *Mask) int {
	n := 0
	for _, w := range m.Bits {
		n += bits.OnesCount8(w)
	}
	return n
}
