package guide

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// JSON text is written with at most one space between tokens: enough for
// the usual `{"a": 1, "b": [2, 3]}` style, and it keeps a model from
// filling its budget with whitespace.
const ws = `[ ]?`

// Scalar and string pieces of JSON's grammar (RFC 8259).
const (
	// \u escapes of UTF-16 surrogates are left out: a pair is one
	// character in two escapes, which would break minLength and
	// maxLength, and a lone one is not a character. Such characters are
	// written as themselves.
	jsonChar    = `(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))`
	jsonString  = `"` + jsonChar + `*"`
	jsonInteger = `-?(?:0|[1-9][0-9]*)`
	jsonNumber  = jsonInteger + `(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?`
	jsonScalar  = `(?:` + jsonString + `|` + jsonNumber + `|true|false|null)`
	noMatch     = `[^\x00-\x{10FFFF}]`
)

// Bounds on what a schema may ask for; past them compilation fails with
// ErrTooLarge rather than growing without limit.
const (
	maxRefDepth  = 3  // how deep $ref may recurse
	maxRepeat    = 64 // minItems/maxItems, minLength/maxLength
	maxRegexText = 1 << 20
	anyDepth     = 3 // nesting of free-form JSON inside a schema
	// maxOneOf bounds a oneOf's branches, which are checked pairwise.
	maxOneOf = 256
)

// anyValue is free-form JSON nested at most depth levels.
func anyValue(depth int) string {
	if depth == 0 {
		return jsonScalar
	}
	return `(?:` + jsonScalar + `|` + anyObject(depth) + `|` + anyArray(depth) + `)`
}

func anyObject(depth int) string { return objectOf(anyValue(depth - 1)) }

// objectOf is a JSON object of any members whose values match value.
func objectOf(value string) string {
	member := jsonString + ws + `:` + ws + value
	return `\{` + ws + `(?:` + member + `(?:` + ws + `,` + ws + member + `)*` + `)?` + ws + `\}`
}

func anyArray(depth int) string {
	v := anyValue(depth - 1)
	return `\[` + ws + `(?:` + v + `(?:` + ws + `,` + ws + v + `)*` + `)?` + ws + `\]`
}

// schemaRegex compiles a JSON Schema to a regular expression over the JSON
// text of its instances. Properties are written in the schema's order, so
// that the language is regular and small. Keywords that would need a
// validator the automaton cannot express (numeric ranges, uniqueItems, ...)
// are refused by name rather than ignored, so that every output that
// completes is valid.
func schemaRegex(raw []byte) (string, error) {
	root, err := decodeOrdered(raw)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return "", err
		}
		return "", fmt.Errorf("%w: schema is not JSON: %w", ErrInvalid, err)
	}
	c := &schemaCompiler{root: root}
	re, err := c.value(root, "#", 0)
	if err != nil {
		return "", err
	}
	if len(re) > maxRegexText {
		return "", fmt.Errorf("%w: the schema expands to more than %d bytes of pattern", ErrTooLarge, maxRegexText)
	}
	return re, nil
}

type schemaCompiler struct {
	root any
	size int
}

// ignored are annotations that constrain nothing.
var ignored = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$schema": true,
	"$id": true, "$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "additionalProperties": true, "strict": true,
}

// handled are the keywords value understands.
var handled = map[string]bool{
	"type": true, "enum": true, "const": true, "anyOf": true, "oneOf": true, "allOf": true,
	"$ref": true, "properties": true, "required": true, "items": true, "minItems": true,
	"maxItems": true, "minLength": true, "maxLength": true, "pattern": true, "format": true,
}

func (c *schemaCompiler) grow(re string) (string, error) {
	c.size += len(re)
	if c.size > maxRegexText {
		return "", fmt.Errorf("%w: the schema expands to more than %d bytes of pattern", ErrTooLarge, maxRegexText)
	}
	return re, nil
}

func (c *schemaCompiler) value(s any, path string, refs int) (string, error) {
	switch v := s.(type) {
	case bool:
		if v {
			return c.grow(anyValue(anyDepth))
		}
		return noMatch, nil
	case *omap:
		return c.object(v, path, refs)
	}
	return "", fmt.Errorf("%w: %s: a schema must be an object or a boolean", ErrInvalid, path)
}

func (c *schemaCompiler) object(s *omap, path string, refs int) (string, error) {
	keys := s.keys
	for _, k := range keys {
		if !ignored[k] && !handled[k] {
			return "", fmt.Errorf("%w: %s: keyword %q", ErrUnsupported, path, k)
		}
	}
	if ref, ok := s.get("$ref"); ok {
		if len(keys) > 1 && !onlyAnnotations(keys, "$ref") {
			return "", fmt.Errorf("%w: %s: $ref next to other keywords", ErrUnsupported, path)
		}
		return c.ref(ref, path, refs)
	}
	if values, ok, err := c.values(s, path, refs); err != nil {
		return "", err
	} else if ok {
		return c.literal(values, path)
	}
	for _, kw := range []string{"anyOf", "oneOf", "allOf"} {
		if _, ok := s.get(kw); ok && !onlyAnnotations(keys, kw) {
			// An intersection with the siblings' language is beyond a
			// regular expression; ignoring them would let invalid
			// output through.
			return "", fmt.Errorf("%w: %s: %s next to other keywords (move them into each branch)", ErrUnsupported, path, kw)
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if v, ok := s.get(kw); ok {
			return c.alternatives(v, path+"/"+kw, refs, kw == "oneOf")
		}
	}
	if v, ok := s.get("allOf"); ok {
		list, ok := v.([]any)
		if !ok || len(list) != 1 {
			return "", fmt.Errorf("%w: %s/allOf with other than one schema", ErrUnsupported, path)
		}
		return c.value(list[0], path+"/allOf/0", refs)
	}
	types, err := typesOf(s, path)
	if err != nil {
		return "", err
	}
	var alts []string
	for _, t := range types {
		var re string
		switch t {
		case "string":
			re, err = c.str(s, path)
		case "integer":
			re = jsonInteger
		case "number":
			re = jsonNumber
		case "boolean":
			re = `(?:true|false)`
		case "null":
			re = `null`
		case "object":
			re, err = c.properties(s, path, refs)
		case "array":
			re, err = c.array(s, path, refs)
		default:
			return "", fmt.Errorf("%w: %s: unknown type %q", ErrInvalid, path, t)
		}
		if err != nil {
			return "", err
		}
		alts = append(alts, re)
	}
	return c.grow(`(?:` + strings.Join(alts, `|`) + `)`)
}

func onlyAnnotations(keys []string, except string) bool {
	for _, k := range keys {
		if k != except && !ignored[k] {
			return false
		}
	}
	return true
}

// typesOf is the schema's "type" as a list; a schema without one takes
// every type its other keywords do not rule out.
func typesOf(s *omap, path string) ([]string, error) {
	has := func(k string) bool { _, ok := s.get(k); return ok }
	t, _ := s.get("type")
	switch t := t.(type) {
	case string:
		return []string{t}, nil
	case []any:
		var out []string
		for _, v := range t {
			name, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s/type must list strings", ErrInvalid, path)
			}
			out = append(out, name)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: %s/type is empty", ErrInvalid, path)
		}
		return out, nil
	case nil:
		switch {
		case has("properties") || has("required"):
			return []string{"object"}, nil
		case has("items") || has("minItems") || has("maxItems"):
			return []string{"array"}, nil
		case has("pattern") || has("minLength") || has("maxLength") || has("format"):
			return []string{"string"}, nil
		}
		return []string{"string", "number", "boolean", "null", "object", "array"}, nil
	}
	return nil, fmt.Errorf("%w: %s/type must be a string or a list", ErrInvalid, path)
}

func (c *schemaCompiler) ref(ref any, path string, refs int) (string, error) {
	name, ok := ref.(string)
	if !ok || !strings.HasPrefix(name, "#") {
		return "", fmt.Errorf("%w: %s/$ref: only local references (#/...) are supported", ErrUnsupported, path)
	}
	if refs >= maxRefDepth {
		// Recursion is cut here: the branch matches nothing, so a schema
		// that needs deeper nesting is reported unsatisfiable.
		return noMatch, nil
	}
	at, ok := c.lookup(name)
	if !ok {
		return "", fmt.Errorf("%w: %s/$ref %q does not resolve", ErrInvalid, path, name)
	}
	return c.value(at, name, refs+1)
}

// lookup finds the schema a local JSON pointer (#/...) names.
func (c *schemaCompiler) lookup(name string) (any, bool) {
	at := c.root
	for _, part := range strings.Split(strings.TrimPrefix(name, "#"), "/")[1:] {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := at.(*omap)
		if !ok {
			return nil, false
		}
		if at, ok = m.get(part); !ok {
			return nil, false
		}
	}
	return at, true
}

// values are the instances an enum or const allows (ok false when the
// schema has neither) that the schema's other keywords accept too: JSON
// Schema's keywords all hold at once, so {"type":"string","enum":["a",1]}
// allows only "a". Each value is checked, in its canonical JSON text,
// against the automaton of the rest of the schema; an object value whose
// keys the rest orders differently is dropped, which errs on the safe
// side.
func (c *schemaCompiler) values(s *omap, path string, refs int) (values []any, ok bool, err error) {
	if v, has := s.get("enum"); has {
		if values, ok = v.([]any); !ok {
			return nil, false, fmt.Errorf("%w: %s/enum must be an array", ErrInvalid, path)
		}
	}
	if v, has := s.get("const"); has {
		values, ok = []any{v}, true
	}
	if !ok {
		return nil, false, nil
	}
	// The rest drops the keyword that gave the values; with const and
	// enum together, the const is checked against the enum.
	drop := "enum"
	if _, has := s.get("const"); has {
		drop = "const"
	}
	rest := &omap{vals: maps.Clone(s.vals)}
	delete(rest.vals, drop)
	for _, k := range s.keys {
		if k != drop {
			rest.keys = append(rest.keys, k)
		}
	}
	if onlyAnnotations(rest.keys, "") {
		return values, true, nil
	}
	re, err := c.object(rest, path, refs)
	if err != nil {
		return nil, true, err
	}
	d, start, err := compilePattern(re)
	if err != nil && !errors.Is(err, ErrUnsatisfiable) {
		return nil, true, err
	}
	var kept []any
	for _, v := range values {
		text, err := json.Marshal(plain(v))
		if err != nil {
			return nil, true, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
		}
		if d == nil {
			break // the rest matches nothing
		}
		match, err := d.matches(start, text)
		if err != nil {
			return nil, true, err
		}
		if match {
			kept = append(kept, v)
		}
	}
	return kept, true, nil
}

func (c *schemaCompiler) literal(values []any, path string) (string, error) {
	if len(values) == 0 {
		return noMatch, nil
	}
	alts := make([]string, len(values))
	for i, v := range values {
		b, err := json.Marshal(plain(v))
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
		}
		alts[i] = regexp.QuoteMeta(string(b))
	}
	return c.grow(`(?:` + strings.Join(alts, `|`) + `)`)
}

// alternatives is anyOf, or oneOf when one is set. oneOf compiles as
// anyOf when its branches are disjoint (as those of the schemas clients
// send for tools are, by type or by a const); a text two branches match
// would be invalid, so overlapping branches are refused.
func (c *schemaCompiler) alternatives(v any, path string, refs int, one bool) (string, error) {
	list, ok := v.([]any)
	if !ok {
		return "", fmt.Errorf("%w: %s must be an array", ErrInvalid, path)
	}
	if len(list) == 0 {
		return noMatch, nil
	}
	alts := make([]string, len(list))
	for i, s := range list {
		re, err := c.value(s, path+"/"+strconv.Itoa(i), refs)
		if err != nil {
			return "", err
		}
		alts[i] = re
	}
	if one {
		if len(list) > maxOneOf {
			return "", fmt.Errorf("%w: %s has %d branches; at most %d", ErrTooLarge, path, len(list), maxOneOf)
		}
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				if !c.disjoint(list[i], list[j]) {
					return "", fmt.Errorf("%w: %s: branches %d and %d may both match, which oneOf forbids; "+
						"oneOf needs branches of different types, or objects that require one property with different string consts (anyOf allows overlap)",
						ErrUnsupported, path, i, j)
				}
			}
		}
	}
	return c.grow(`(?:` + strings.Join(alts, `|`) + `)`)
}

// disjoint reports whether no JSON value is valid under both schemas, by
// a sufficient test on their JSON Schema meaning (not on the narrower
// language compiled here, which would be unsound: {"properties":{...}}
// also holds for every number): they allow no type in common, or both
// require a property whose values are different string consts or enums.
func (c *schemaCompiler) disjoint(a, b any) bool {
	ta, tb := c.instanceTypes(a, 0), c.instanceTypes(b, 0)
	common := false
	for t := range ta {
		common = common || tb[t]
	}
	if !common {
		return true
	}
	oa, ok := c.resolve(a, 0).(*omap)
	if !ok {
		return false
	}
	ob, ok := c.resolve(b, 0).(*omap)
	if !ok {
		return false
	}
	for _, k := range requiredOf(oa) {
		va, vb := c.tags(oa, k), c.tags(ob, k)
		if va == nil || vb == nil || !slices.Contains(requiredOf(ob), k) {
			continue
		}
		if !slices.ContainsFunc(va, func(v string) bool { return slices.Contains(vb, v) }) {
			return true
		}
	}
	return false
}

// resolve follows $ref (a bounded number of times) to the schema it names,
// nil when it does not resolve.
func (c *schemaCompiler) resolve(s any, refs int) any {
	m, ok := s.(*omap)
	if !ok {
		return s
	}
	ref, ok := m.get("$ref")
	if !ok {
		return s
	}
	name, ok := ref.(string)
	if !ok || !strings.HasPrefix(name, "#") || refs >= maxRefDepth {
		return nil
	}
	at, ok := c.lookup(name)
	if !ok {
		return nil
	}
	return c.resolve(at, refs+1)
}

// instanceTypes are the JSON types a schema may hold for, by its type,
// const, enum or alternatives ("number" stands for non-integral numbers).
func (c *schemaCompiler) instanceTypes(s any, depth int) map[string]bool {
	all := map[string]bool{"null": true, "boolean": true, "object": true, "array": true, "integer": true, "number": true, "string": true}
	s = c.resolve(s, 0)
	if depth > maxRefDepth || s == nil || s == true {
		return all
	}
	m, ok := s.(*omap)
	if !ok {
		return map[string]bool{} // false
	}
	out := map[string]bool{}
	if values, ok := listed(m); ok {
		for _, v := range values {
			out[valueType(v)] = true
		}
		return out
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if list, ok := m.get(kw); ok {
			branches, _ := list.([]any)
			for _, b := range branches {
				maps.Copy(out, c.instanceTypes(b, depth+1))
			}
			return out
		}
	}
	switch t := m.vals["type"].(type) {
	case string:
		out[t] = true
	case []any:
		for _, v := range t {
			name, _ := v.(string)
			out[name] = true
		}
	default:
		return all
	}
	if out["number"] {
		out["integer"] = true
	}
	return out
}

func valueType(v any) string {
	switch v := v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case *omap:
		return "object"
	case []any:
		return "array"
	case json.Number:
		if f, err := v.Float64(); err == nil && f != math.Trunc(f) {
			return "number"
		}
		return "integer" // 1e2 and 1.0 are integers too
	}
	return "null"
}

// listed are the values a schema's const or enum allows, before its other
// keywords have their say.
func listed(m *omap) ([]any, bool) {
	if v, ok := m.get("const"); ok {
		return []any{v}, true
	}
	v, ok := m.get("enum")
	list, _ := v.([]any)
	return list, ok
}

// requiredOf lists a schema's required properties.
func requiredOf(m *omap) []string {
	list, _ := m.vals["required"].([]any)
	var out []string
	for _, v := range list {
		if name, ok := v.(string); ok {
			out = append(out, name)
		}
	}
	return out
}

// tags are the string values property k of object schema m is limited to
// by a const or an enum of strings, or nil.
func (c *schemaCompiler) tags(m *omap, k string) []string {
	props, ok := m.vals["properties"].(*omap)
	if !ok {
		return nil
	}
	p, ok := c.resolve(props.vals[k], 0).(*omap)
	if !ok {
		return nil
	}
	values, _ := listed(p)
	var out []string
	for _, v := range values {
		str, ok := v.(string)
		if !ok {
			return nil
		}
		out = append(out, str)
	}
	return out
}

// count reads a non-negative integer keyword, bounded by maxRepeat.
func count(s *omap, kw, path string, def int) (int, error) {
	v, ok := s.get(kw)
	if !ok {
		return def, nil
	}
	num, ok := v.(json.Number)
	f, err := num.Float64()
	if !ok || err != nil || f < 0 || f != math.Trunc(f) {
		return 0, fmt.Errorf("%w: %s/%s must be a non-negative integer", ErrInvalid, path, kw)
	}
	if f > maxRepeat {
		return 0, fmt.Errorf("%w: %s/%s is %v; at most %d is supported", ErrTooLarge, path, kw, f, maxRepeat)
	}
	return int(f), nil
}

func bounds(s *omap, lo, hi, path string) (int, int, error) {
	a, err := count(s, lo, path, 0)
	if err != nil {
		return 0, 0, err
	}
	b, err := count(s, hi, path, -1)
	if err != nil {
		return 0, 0, err
	}
	return a, b, nil
}

func repeatSuffix(lo, hi int) string {
	if hi < 0 {
		return fmt.Sprintf("{%d,}", lo)
	}
	return fmt.Sprintf("{%d,%d}", lo, hi)
}

// RFC 3339 dates: each month's length, and February 29th only in leap
// years.
const (
	date = `(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))` +
		`|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)`
	clock  = `(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?`
	offset = `(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])`
)

var formats = map[string]string{
	"date":      date,
	"time":      clock + offset,
	"date-time": date + `T` + clock + offset,
	"uuid":      `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`,
}

func (c *schemaCompiler) str(s *omap, path string) (string, error) {
	_, lengths := s.get("minLength")
	if _, ok := s.get("maxLength"); ok {
		lengths = true
	}
	for _, kw := range []string{"format", "pattern"} {
		if _, ok := s.get(kw); ok && lengths {
			// Both would need the intersection of two languages.
			return "", fmt.Errorf("%w: %s: minLength or maxLength next to %s (bound the length in the pattern)", ErrUnsupported, path, kw)
		}
	}
	if f, ok := s.get("format"); ok {
		name, _ := f.(string)
		re, ok := formats[name]
		if !ok {
			return "", fmt.Errorf("%w: %s/format %q (supported: date, time, date-time, uuid)", ErrUnsupported, path, f)
		}
		return `"` + re + `"`, nil
	}
	if p, ok := s.get("pattern"); ok {
		text, ok := p.(string)
		if !ok {
			return "", fmt.Errorf("%w: %s/pattern must be a string", ErrInvalid, path)
		}
		re, err := jsonStringPattern(text)
		if err != nil {
			return "", fmt.Errorf("%s/pattern: %w", path, err)
		}
		return `"` + re + `"`, nil
	}
	lo, hi, err := bounds(s, "minLength", "maxLength", path)
	if err != nil {
		return "", err
	}
	if hi >= 0 && hi < lo {
		return noMatch, nil
	}
	return `"` + jsonChar + repeatSuffix(lo, hi) + `"`, nil
}

// jsonStringPattern rewrites a JSON Schema pattern (which matches the
// decoded string) into one over the string's JSON text: characters that
// JSON must escape are matched in their escaped form. Patterns are
// unanchored in JSON Schema, so unless they are anchored they may be
// surrounded by any characters.
func jsonStringPattern(p string) (string, error) {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	anchoredStart := strings.HasPrefix(p, "^")
	anchoredEnd := strings.HasSuffix(p, "$") && !strings.HasSuffix(p, `\$`)
	re = stripAnchors(re)
	out, err := escapeForJSON(re)
	if err != nil {
		return "", err
	}
	body := out.String()
	if !anchoredStart {
		body = jsonChar + `*` + `(?:` + body + `)`
	}
	if !anchoredEnd {
		body = `(?:` + body + `)` + jsonChar + `*`
	}
	return body, nil
}

// escapeForJSON replaces, in a parsed pattern, every character that JSON
// strings must escape (", \ and controls) by its escape sequence.
func escapeForJSON(re *syntax.Regexp) (*syntax.Regexp, error) {
	switch re.Op {
	case syntax.OpLiteral:
		var subs []*syntax.Regexp
		for _, r := range re.Rune {
			subs = append(subs, escapedRune(r, re.Flags))
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: subs}, nil
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		ranges := re.Rune
		switch re.Op {
		case syntax.OpAnyChar:
			ranges = []rune{0, 0x10FFFF}
		case syntax.OpAnyCharNotNL:
			ranges = []rune{0, '\n' - 1, '\n' + 1, 0x10FFFF}
		}
		plain, special := splitEscapes(ranges)
		alts := []*syntax.Regexp{}
		if len(plain) > 0 {
			alts = append(alts, &syntax.Regexp{Op: syntax.OpCharClass, Rune: plain})
		}
		for _, r := range special {
			alts = append(alts, escapedRune(r, 0))
		}
		if len(alts) == 0 {
			return &syntax.Regexp{Op: syntax.OpNoMatch}, nil
		}
		return &syntax.Regexp{Op: syntax.OpAlternate, Sub: alts}, nil
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return nil, fmt.Errorf("%w: anchors inside a pattern", ErrUnsupported)
	}
	cp := *re
	cp.Sub = make([]*syntax.Regexp, len(re.Sub))
	for i, s := range re.Sub {
		e, err := escapeForJSON(s)
		if err != nil {
			return nil, err
		}
		cp.Sub[i] = e
	}
	return &cp, nil
}

func needsEscape(r rune) bool { return r == '"' || r == '\\' || r < 0x20 }

// escapeSet are the characters JSON strings must escape, in order.
var escapeSet = func() []rune {
	var out []rune
	for r := rune(0); r < 0x20; r++ {
		out = append(out, r)
	}
	return append(out, '"', '\\')
}()

// splitEscapes returns ranges without the characters JSON escapes, and
// those characters that were in ranges.
func splitEscapes(ranges []rune) (plain, special []rune) {
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		start := lo
		for _, e := range escapeSet {
			if e < lo || e > hi {
				continue
			}
			special = append(special, e)
			if start < e {
				plain = append(plain, start, e-1)
			}
			start = e + 1
		}
		if start <= hi {
			plain = append(plain, start, hi)
		}
	}
	return plain, special
}

func escapedRune(r rune, flags syntax.Flags) *syntax.Regexp {
	if !needsEscape(r) {
		return &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune{r}, Flags: flags & syntax.FoldCase}
	}
	var text string
	switch r {
	case '"':
		text = `\"`
	case '\\':
		text = `\\`
	case '\b':
		text = `\b`
	case '\f':
		text = `\f`
	case '\n':
		text = `\n`
	case '\r':
		text = `\r`
	case '\t':
		text = `\t`
	default:
		text = fmt.Sprintf(`\u%04x`, r)
	}
	return &syntax.Regexp{Op: syntax.OpLiteral, Rune: []rune(text)}
}

func (c *schemaCompiler) properties(s *omap, path string, refs int) (string, error) {
	props := &omap{vals: map[string]any{}}
	if p, ok := s.get("properties"); ok {
		if props, ok = p.(*omap); !ok {
			return "", fmt.Errorf("%w: %s/properties must be an object", ErrInvalid, path)
		}
	}
	required := map[string]bool{}
	if r, ok := s.get("required"); ok {
		list, ok := r.([]any)
		if !ok {
			return "", fmt.Errorf("%w: %s/required must be an array", ErrInvalid, path)
		}
		for _, v := range list {
			name, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("%w: %s/required must list strings", ErrInvalid, path)
			}
			if _, ok := props.get(name); !ok {
				// A required property the schema does not describe
				// takes what additionalProperties allows: any value by
				// default, none when it is false.
				extra, ok := s.get("additionalProperties")
				if !ok {
					extra = true
				}
				props = &omap{keys: append(slices.Clone(props.keys), name), vals: maps.Clone(props.vals)}
				props.vals[name] = extra
			}
			required[name] = true
		}
	}
	if len(props.keys) == 0 {
		// Members, if any, are additional properties.
		extra, ok := s.get("additionalProperties")
		switch {
		case extra == false:
			return `\{` + ws + `\}`, nil
		case !ok || extra == true:
			return c.grow(anyObject(anyDepth))
		}
		v, err := c.value(extra, path+"/additionalProperties", refs)
		if err != nil {
			return "", err
		}
		return c.grow(objectOf(v))
	}
	names := props.keys
	items := make([]string, len(names))
	for i, name := range names {
		key, _ := json.Marshal(name)
		v, err := c.value(props.vals[name], path+"/properties/"+name, refs)
		if err != nil {
			return "", err
		}
		items[i] = regexp.QuoteMeta(string(key)) + ws + `:` + ws + v
	}
	// after[i]: the members from i on, when one was already written (each
	// takes a leading comma); first[i]: the same when none was.
	sep := ws + `,` + ws
	after := make([]string, len(names)+1)
	for i := len(names) - 1; i >= 0; i-- {
		m := `(?:` + sep + items[i] + `)`
		if !required[names[i]] {
			m += `?`
		}
		// Counted as built: n optional properties make n suffixes of
		// up to n members each, quadratic in the schema's size.
		if _, err := c.grow(m + after[i+1]); err != nil {
			return "", err
		}
		after[i] = m + after[i+1]
	}
	first := ""
	for i := len(names) - 1; i >= 0; i-- {
		with := items[i] + after[i+1]
		if required[names[i]] {
			first = with
			continue
		}
		first = `(?:` + with + `|` + first + `)`
		if _, err := c.grow(first); err != nil {
			return "", err
		}
	}
	return c.grow(`\{` + ws + first + ws + `\}`)
}

func (c *schemaCompiler) array(s *omap, path string, refs int) (string, error) {
	lo, hi, err := bounds(s, "minItems", "maxItems", path)
	if err != nil {
		return "", err
	}
	if hi >= 0 && hi < lo {
		return noMatch, nil
	}
	item := anyValue(anyDepth - 1)
	if it, ok := s.get("items"); ok {
		if item, err = c.value(it, path+"/items", refs); err != nil {
			return "", err
		}
	}
	empty := `\[` + ws + `\]`
	if hi == 0 {
		return empty, nil
	}
	rest := repeatSuffix(max(lo-1, 0), hi-1)
	if hi < 0 {
		rest = repeatSuffix(max(lo-1, 0), -1)
	}
	list := `\[` + ws + item + `(?:` + ws + `,` + ws + item + `)` + rest + ws + `\]`
	if lo == 0 {
		list = `(?:` + empty + `|` + list + `)`
	}
	return c.grow(list)
}
