// Package guidetest generates random constraints for property tests and
// fuzz seeds of coordinator/guide, and checks outputs against them with
// validators that share no code with the guide: Go's regexp for regular
// expressions, github.com/santhosh-tekuri/jsonschema for JSON Schema. It is
// imported by tests.
package guidetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema returns a random JSON Schema of bounded size: objects with
// required and optional properties, arrays with item bounds, strings with
// lengths, patterns and formats, numbers, integers, booleans, null, enums,
// consts, type lists and anyOf, nested at most three deep. Every schema it
// makes is one the guide claims to enforce exactly.
func Schema(rng *rand.Rand) string {
	g := &schemaGen{rng: rng, budget: 12}
	var root any = g.value(3)
	switch rng.IntN(6) {
	case 0:
		// A definition used through $ref.
		root = obj{{"$defs", obj{{"d", root}}}, {"type", "object"},
			{"properties", obj{{"a", obj{{"$ref", "#/$defs/d"}}}, {"b", obj{{"type", "integer"}}}}}, {"required", []string{"a"}}}
	case 1:
		root = obj{{"allOf", []any{root}}, {"description", "one schema"}}
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err) // the generator builds only marshalable values
	}
	return string(b)
}

type schemaGen struct {
	rng    *rand.Rand
	budget int // schema nodes left, so that wide levels stay small
}

// obj is a JSON object that keeps its keys in order: properties are
// generated in the schema's order, so the order is part of the test.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

var (
	propNames = []string{"id", "name", "tags", "ok", "n", "value", "when", "kind", "a b", "q\"uote", "ünï"}
	patterns  = []string{`^[a-z]+$`, `^[0-9]{2,4}$`, `^(yes|no)$`, `[A-Z]`, `^a.c$`, `^\w+@\w+$`, `x`}
	formats   = []string{"date", "time", "date-time", "uuid"}
	literals  = []any{"a", "b c", "q\"x", `back\slash`, "ünï", "中文", "", "line\nbreak", 0, -7, 12345, json.Number("12345678901234567890"), 2.5, -0.125, 1e-7, true, false, nil,
		[]any{1, "x"}, obj{{"k", "v"}}}
)

func (g *schemaGen) value(depth int) any {
	g.budget--
	kinds := []string{"string", "integer", "number", "boolean", "null", "enum", "const", "typelist"}
	if depth > 0 && g.budget > 0 {
		kinds = append(kinds, "object", "object", "object", "array", "array", "anyOf")
	}
	switch kind := kinds[g.rng.IntN(len(kinds))]; kind {
	case "string":
		return g.str()
	case "integer", "number", "boolean", "null":
		return obj{{"type", kind}}
	case "enum":
		n := 1 + g.rng.IntN(4)
		var vals []any
		for _, i := range g.rng.Perm(len(literals))[:n] {
			vals = append(vals, literals[i])
		}
		if g.rng.IntN(2) == 0 {
			// Keywords hold together: the type keeps only the values
			// of the first value's type.
			return obj{{"type", jsonType(vals[0])}, {"enum", vals}}
		}
		return obj{{"enum", vals}}
	case "const":
		return obj{{"const", literals[g.rng.IntN(len(literals))]}}
	case "typelist":
		types := []string{"string", "integer", "boolean", "null", "number"}
		g.rng.Shuffle(len(types), func(i, j int) { types[i], types[j] = types[j], types[i] })
		return obj{{"type", types[:2]}}
	case "object":
		return g.object(depth)
	case "array":
		s := obj{{"type", "array"}}
		if g.rng.IntN(5) > 0 {
			s = append(s, kv{"items", g.value(depth - 1)})
		}
		lo := g.rng.IntN(3)
		if g.rng.IntN(2) == 0 {
			s = append(s, kv{"minItems", lo})
		}
		if g.rng.IntN(3) > 0 {
			s = append(s, kv{"maxItems", lo + g.rng.IntN(3)})
		}
		return s
	}
	// anyOf, over branches of distinct types so that it means the same as
	// oneOf.
	var alts []any
	for _, t := range g.rng.Perm(5)[:2+g.rng.IntN(2)] {
		switch t {
		case 0:
			alts = append(alts, g.str())
		case 1:
			alts = append(alts, obj{{"type", "integer"}})
		case 2:
			alts = append(alts, obj{{"type", "boolean"}})
		case 3:
			alts = append(alts, g.object(depth-1))
		case 4:
			alts = append(alts, obj{{"type", "array"}, {"items", g.value(depth - 1)}, {"maxItems", 2}})
		}
	}
	key := "anyOf"
	if g.rng.IntN(2) == 0 {
		key = "oneOf"
	}
	return obj{{key, alts}}
}

// jsonType is the JSON Schema type of a literal.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int, json.Number:
		return "integer"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case obj:
		return "object"
	}
	return "null"
}

func (g *schemaGen) str() obj {
	s := obj{{"type", "string"}}
	switch g.rng.IntN(4) {
	case 0:
		s = append(s, kv{"pattern", patterns[g.rng.IntN(len(patterns))]})
	case 1:
		s = append(s, kv{"format", formats[g.rng.IntN(len(formats))]})
	case 2:
		lo := g.rng.IntN(3)
		s = append(s, kv{"minLength", lo}, kv{"maxLength", lo + g.rng.IntN(6)})
	}
	return s
}

func (g *schemaGen) object(depth int) obj {
	n := 1 + g.rng.IntN(3)
	var props obj
	var required []string
	for _, i := range g.rng.Perm(len(propNames))[:n] {
		props = append(props, kv{propNames[i], g.value(depth - 1)})
		if g.rng.IntN(2) == 0 {
			required = append(required, propNames[i])
		}
	}
	s := obj{{"type", "object"}, {"properties", props}}
	switch g.rng.IntN(6) {
	case 0, 1, 2:
		s = append(s, kv{"additionalProperties", false})
	case 3:
		// A required property that properties does not list takes
		// additionalProperties' schema.
		required = append(required, "extra")
		s = append(s, kv{"additionalProperties", obj{{"type", "integer"}}})
	}
	if len(required) > 0 {
		s = append(s, kv{"required", required})
	}
	return s
}

// Regex returns a random RE2 pattern of bounded size: literals (some
// needing escapes), classes and their negations, Perl classes, dot,
// alternation, groups, the repetition operators and counted repetition,
// and case folding. Non-ASCII classes are small ones: repetitions of a
// class such as \pL, thousands of UTF-8 sequences, make DFA states of
// ten thousand NFA nodes, and random byte walks through them reach the
// guide's work bound (a limit, tested in the guide's own tests).
func Regex(rng *rand.Rand) string {
	g := &regexGen{rng: rng, budget: 10}
	return g.concat(3)
}

type regexGen struct {
	rng    *rand.Rand
	budget int
}

var (
	atoms = []string{`a`, `b`, `x`, `7`, `-`, `\.`, `\{`, `"`, ` `, `é`, `中`, `[a-z]`, `[0-9]`, `[A-Fa-f0-9]`, `[^a-z\n]`,
		`[,;:]`, `\d`, `\w`, `\s`, `.`, `[[:upper:]]`, `[α-ωА-я]`}
	repeats = []string{``, ``, ``, `*`, `+`, `?`, `{2}`, `{1,3}`, `{0,2}`, `{2,}`, `*?`}
)

func (g *regexGen) concat(depth int) string {
	var b strings.Builder
	for range 1 + g.rng.IntN(3) {
		b.WriteString(g.item(depth))
	}
	return b.String()
}

func (g *regexGen) item(depth int) string {
	g.budget--
	var it string
	switch r := g.rng.IntN(10); {
	case r < 2 && depth > 0 && g.budget > 0:
		n := 2 + g.rng.IntN(3)
		alts := make([]string, n)
		for i := range alts {
			alts[i] = g.concat(depth - 1)
		}
		it = `(` + strings.Join(alts, `|`) + `)`
	case r < 3 && depth > 0 && g.budget > 0:
		flag := ``
		if g.rng.IntN(3) == 0 {
			flag = `?i:`
		}
		it = `(` + flag + g.concat(depth-1) + `)`
	default:
		it = atoms[g.rng.IntN(len(atoms))]
	}
	return it + repeats[g.rng.IntN(len(repeats))]
}

// Validator checks outputs independently of the guide.
type Validator func(out []byte) error

// FullMatcher reports whether Go's regexp matches pattern against the
// whole of a text. It does not wrap the pattern in ^(?:...)$: a \Q with no
// \E would quote the wrapper's closing half. The leftmost-longest match
// spans the text exactly when some match does.
func FullMatcher(pattern string) (func([]byte) bool, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	re.Longest()
	return func(text []byte) bool {
		loc := re.FindIndex(text)
		return loc != nil && loc[0] == 0 && loc[1] == len(text)
	}, nil
}

// RegexValidator accepts full matches of pattern, by Go's regexp.
func RegexValidator(pattern string) (Validator, error) {
	match, err := FullMatcher(pattern)
	if err != nil {
		return nil, err
	}
	return func(out []byte) error {
		if !match(out) {
			return fmt.Errorf("%q does not match %s", out, pattern)
		}
		return nil
	}, nil
}

// SchemaValidator accepts JSON instances of schema, by the jsonschema
// library, formats asserted.
func SchemaValidator(schema string) (Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		return nil, err
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		return nil, err
	}
	return func(out []byte) error {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
		if err != nil {
			return fmt.Errorf("%q is not JSON: %w", out, err)
		}
		if err := s.Validate(inst); err != nil {
			return fmt.Errorf("%s: %w", out, err)
		}
		return nil
	}, nil
}

// Seeds are the first n schemas and regexes the generators make from a
// fixed seed: the property test's constraints and the fuzzers' corpus.
func Seeds(n int) (schemas, regexes []string) {
	rng := rand.New(rand.NewPCG(19, 2026))
	for range n {
		schemas = append(schemas, Schema(rng))
		regexes = append(regexes, Regex(rng))
	}
	return slices.Clip(schemas), slices.Clip(regexes)
}
