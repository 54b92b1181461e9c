package guide

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/guide/guidetest"
)

// Random walks through the automata of the generated constraints spell
// only texts the independent validators accept.
func TestGeneratedConstraintsWalk(t *testing.T) {
	schemas, regexes := guidetest.Seeds(100)
	rng := rand.New(rand.NewPCG(11, 12))
	check := func(t *testing.T, spec Spec, valid guidetest.Validator) {
		d, start := compileSpec(t, spec)
		for range 40 {
			out, ok := walk(t, d, start, rng, 0.3)
			if !ok {
				continue
			}
			if err := valid(out); err != nil {
				t.Fatalf("%s%s: %v", spec.Pattern, spec.Schema, err)
			}
		}
	}
	for i, s := range schemas {
		v, err := guidetest.SchemaValidator(s)
		if err != nil {
			t.Fatalf("schema %d %s: %v", i, s, err)
		}
		check(t, Spec{Kind: JSONSchema, Schema: json.RawMessage(s)}, v)
	}
	for i, p := range regexes {
		v, err := guidetest.RegexValidator(p)
		if err != nil {
			t.Fatalf("regex %d %s: %v", i, p, err)
		}
		check(t, Spec{Kind: Regex, Pattern: p}, v)
	}
}
