package guide

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Errors from Compile; test with errors.Is.
var (
	// ErrInvalid: the constraint is malformed (bad regex syntax, a schema
	// that is not a schema).
	ErrInvalid = errors.New("invalid constraint")
	// ErrUnsupported: valid, but asks for something the automaton cannot
	// enforce; the message names it.
	ErrUnsupported = errors.New("unsupported constraint")
	// ErrTooLarge: the constraint would need more states or memory than
	// a request may use.
	ErrTooLarge = errors.New("constraint too large")
	// ErrUnsatisfiable: no text at all meets the constraint.
	ErrUnsatisfiable = errors.New("constraint cannot be satisfied")
)

// Kind says what a Spec constrains output to.
type Kind uint8

const (
	// Regex: a full match of an RE2 pattern (Go's regexp syntax).
	Regex Kind = iota + 1
	// JSONSchema: a JSON instance of a JSON Schema.
	JSONSchema
	// JSONObject: any JSON object (OpenAI's json_object mode).
	JSONObject
	// Choice: exactly one of a list of strings.
	Choice
)

// Spec is a constraint as a request states it.
type Spec struct {
	Kind    Kind
	Pattern string          // Regex
	Schema  json.RawMessage // JSONSchema
	Choices []string        // Choice
}

// Limits on what one constraint may cost.
const (
	maxPattern = 16 << 10 // bytes of a user regex
	maxNodes   = 1 << 18  // NFA nodes
	maxStates  = 1 << 13  // DFA states built for one constraint
	maxWork    = 1 << 28  // NFA nodes visited building them: about a second
	maxHeld    = 1 << 23  // NFA nodes their sets hold: 64 MiB with the keys
	// objectDepth is how deeply json_object output may nest.
	objectDepth = 5
)

// Key identifies a Spec, for caching compiled matchers.
func (s Spec) Key() string {
	switch s.Kind {
	case Regex:
		return "r" + s.Pattern
	case JSONSchema:
		return "s" + string(s.Schema)
	case Choice:
		b, _ := json.Marshal(s.Choices)
		return "c" + string(b)
	}
	return fmt.Sprintf("k%d", s.Kind)
}

// pattern is the regular expression the output must fully match.
func (s Spec) pattern() (string, error) {
	switch s.Kind {
	case Regex:
		if len(s.Pattern) > maxPattern {
			return "", fmt.Errorf("%w: the regex is %d bytes; at most %d", ErrTooLarge, len(s.Pattern), maxPattern)
		}
		return s.Pattern, nil
	case JSONSchema:
		return schemaRegex(s.Schema)
	case JSONObject:
		return anyObject(objectDepth), nil
	case Choice:
		if len(s.Choices) == 0 {
			return "", fmt.Errorf("%w: guided_choice is empty", ErrUnsatisfiable)
		}
		alts := make([]string, len(s.Choices))
		n := 0
		for i, c := range s.Choices {
			alts[i] = regexp.QuoteMeta(c)
			n += len(alts[i])
		}
		if n > maxPattern {
			return "", fmt.Errorf("%w: the choices add up to %d bytes; at most %d", ErrTooLarge, n, maxPattern)
		}
		return strings.Join(alts, "|"), nil
	}
	return "", fmt.Errorf("%w: unknown kind %d", ErrInvalid, s.Kind)
}

// automaton compiles a Spec to a lazily built DFA over output bytes.
func (s Spec) automaton() (*dfa, int32, error) {
	p, err := s.pattern()
	if err != nil {
		return nil, 0, err
	}
	return compilePattern(p)
}

// compilePattern compiles a full match of an RE2 pattern to a lazily built
// DFA over bytes.
func compilePattern(p string) (*dfa, int32, error) {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) && (se.Code == syntax.ErrLarge || se.Code == syntax.ErrInvalidRepeatSize) {
			return nil, 0, fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	n, err := compileRegexp(re.Simplify(), maxNodes)
	if err != nil {
		return nil, 0, err
	}
	if !n.live[n.start] {
		return nil, 0, ErrUnsatisfiable
	}
	return newDFA(n, dfaBounds{states: maxStates, work: maxWork, held: maxHeld})
}
