package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Chat templates need things gonja v2.9.1 does differently from Python's
// Jinja (which transformers runs) and @huggingface/jinja:
//   - objects keep their key order: templates print tool schemas through
//     tojson and iterate them with items(); gonja's dict methods and items
//     filter sort a map's keys and know nothing of its ordered Dict;
//   - tojson writes Python's json.dumps: ", " and ": " separators, indent as
//     json.dumps indents, non-ASCII and <>&' left as they are (gonja
//     marshals with Go's encoding/json: compact, HTML-escaped, ' escaped);
//   - xs[-n] on a list of exactly n items is undefined in gonja (its
//     GetItem tests len > -n): messages[-1] of a one-message chat, or
//     Mistral's user_messages[-1]. Lists of the input and of the list
//     filter are jinjaLists, which index as Python does.
//
// chatEnvironment is gonja's default environment with tojson, the items
// and list filters and the dict methods items/keys/values replaced to do
// that, and template input is built by jinjaValue.
var chatEnvironment = func() *exec.Environment {
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	list, _ := builtins.Filters.Get("list")
	for name, f := range map[string]exec.FilterFunction{"tojson": filterToJSON, "items": filterItems, "list": listFilter(list)} {
		if err := filters.Replace(name, f); err != nil {
			panic(err) // gonja renamed a builtin filter: caught by any test
		}
	}
	dict := map[string]exec.Method[map[string]any]{
		"items": func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
			return dictPairs(self, args, 2)
		},
		"keys": func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
			return dictPairs(self, args, 0)
		},
		"values": func(_ map[string]any, self *exec.Value, args *exec.VarArgs) (any, error) {
			return dictPairs(self, args, 1)
		},
	}
	for _, name := range []string{"get", "pop", "setdefault", "update", "copy", "clear"} {
		if m, ok := builtins.Methods.Dict.Get(name); ok {
			dict[name] = m
		}
	}
	methods := builtins.Methods
	methods.Dict = exec.NewMethodSet(dict)
	return &exec.Environment{
		Context:           gonja.DefaultContext,
		Filters:           filters,
		Tests:             builtins.Tests,
		ControlStructures: builtins.ControlStructures,
		Methods:           methods,
	}
}()

// jinjaList is a template list whose negative indexes reach the whole
// list (gonja's own GetItem misses xs[-len(xs)]).
type jinjaList []any

// GetItem implements exec.ItemGetter.
func (l jinjaList) GetItem(key any) (*exec.Value, bool) {
	i, ok := key.(int)
	if !ok {
		return exec.AsValue(nil), false
	}
	if i < 0 {
		i += len(l)
	}
	if i < 0 || i >= len(l) {
		return exec.AsValue(nil), false
	}
	return exec.ToValue(l[i]), true
}

// listFilter wraps gonja's list filter so that its result is a jinjaList.
func listFilter(list exec.FilterFunction) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		out := list(e, in, params)
		if xs, ok := out.Interface().([]any); ok {
			return exec.AsValue(jinjaList(xs))
		}
		return out
	}
}

// orderedPairs returns a dict value's pairs in order: an ordered Dict's as
// they are, a Go map's by sorted key.
func orderedPairs(v *exec.Value) []*exec.Pair {
	switch d := v.Interface().(type) {
	case *exec.Dict:
		return d.Pairs
	case exec.Dict:
		return d.Pairs
	}
	var out []*exec.Pair
	for _, k := range v.Keys() {
		item, _ := v.GetItem(k.Interface())
		out = append(out, &exec.Pair{Key: k, Value: item})
	}
	return out
}

// dictPairs is items() (what 2), keys() (0) and values() (1).
func dictPairs(self *exec.Value, args *exec.VarArgs, what int) (any, error) {
	if len(args.Args) > 0 || len(args.KwArgs) > 0 {
		return nil, exec.ErrInvalidCall(errors.New("takes no arguments"))
	}
	var out []any
	for _, p := range orderedPairs(self) {
		switch what {
		case 0:
			out = append(out, p.Key.Interface())
		case 1:
			out = append(out, p.Value.Interface())
		default:
			out = append(out, []any{p.Key.Interface(), p.Value.Interface()})
		}
	}
	return out, nil
}

func filterItems(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	switch {
	case in.IsError(), in.IsList():
		return in
	case in.IsNil():
		return exec.AsValue([]any{})
	case !in.IsDict():
		return exec.AsValue(errors.New("items requires a mapping"))
	}
	out, err := dictPairs(in, params, 2)
	if err != nil {
		return exec.AsValue(err)
	}
	return exec.AsValue(out)
}

// filterToJSON is tojson as transformers defines it: json.dumps with
// ensure_ascii=False, and indent.
func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	indent := ""
	if v, ok := params.KwArgs["indent"]; ok && !v.IsNil() {
		if !v.IsInteger() {
			return exec.AsValue(fmt.Errorf("tojson: indent must be an integer, got %s", v.String()))
		}
		indent = strings.Repeat(" ", v.Integer())
	}
	var sb strings.Builder
	if err := writePyJSON(&sb, in.Interface(), indent, 0); err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(sb.String())
}

// writePyJSON writes v as Python's json.dumps(v, ensure_ascii=False,
// indent=len(indent) or None) does.
func writePyJSON(sb *strings.Builder, v any, indent string, level int) error {
	sep, open := ", ", ""
	if indent != "" {
		sep, open = ",", "\n"+strings.Repeat(indent, level+1)
	}
	closeAt := func() {
		if indent != "" {
			sb.WriteString("\n" + strings.Repeat(indent, level))
		}
	}
	switch x := v.(type) {
	case nil:
		sb.WriteString("null")
		return nil
	case *exec.Value:
		if x.IsNil() {
			sb.WriteString("null")
			return nil
		}
		return writePyJSON(sb, x.Interface(), indent, level)
	case string:
		writePyString(sb, x)
		return nil
	case bool:
		sb.WriteString(strconv.FormatBool(x))
		return nil
	case *exec.Dict, exec.Dict:
		pairs := orderedPairs(exec.AsValue(x))
		if len(pairs) == 0 {
			sb.WriteString("{}")
			return nil
		}
		sb.WriteString("{")
		for i, p := range pairs {
			if i > 0 {
				sb.WriteString(sep)
			}
			sb.WriteString(open)
			writePyString(sb, pyKey(p.Key))
			sb.WriteString(": ")
			if err := writePyJSON(sb, p.Value, indent, level+1); err != nil {
				return err
			}
		}
		closeAt()
		sb.WriteString("}")
		return nil
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		sb.WriteString(strconv.FormatInt(r.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		sb.WriteString(strconv.FormatUint(r.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		sb.WriteString(pyFloat(r.Float()))
	case reflect.Slice, reflect.Array:
		if r.Len() == 0 {
			sb.WriteString("[]")
			return nil
		}
		sb.WriteString("[")
		for i := range r.Len() {
			if i > 0 {
				sb.WriteString(sep)
			}
			sb.WriteString(open)
			if err := writePyJSON(sb, r.Index(i).Interface(), indent, level+1); err != nil {
				return err
			}
		}
		closeAt()
		sb.WriteString("]")
	case reflect.Map:
		return writePyJSON(sb, &exec.Dict{Pairs: orderedPairs(exec.AsValue(v))}, indent, level)
	case reflect.Pointer:
		if r.IsNil() {
			sb.WriteString("null")
			return nil
		}
		return writePyJSON(sb, r.Elem().Interface(), indent, level)
	default:
		return fmt.Errorf("tojson: cannot serialize %T", v)
	}
	return nil
}

// pyKey is a dict key as json.dumps writes it: strings as they are,
// numbers and booleans as their JSON text.
func pyKey(k *exec.Value) string {
	switch {
	case k.IsString():
		return k.String()
	case k.IsBool():
		return strconv.FormatBool(k.Bool())
	case k.IsNil():
		return "null"
	}
	var sb strings.Builder
	if writePyJSON(&sb, k.Interface(), "", 0) != nil {
		return k.String()
	}
	return sb.String()
}

// writePyString quotes s as json.dumps(ensure_ascii=False) does.
func writePyString(sb *strings.Builder, s string) {
	sb.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			sb.WriteString(`\"`)
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case '\b':
			sb.WriteString(`\b`)
		case '\f':
			sb.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(sb, `\u%04x`, r)
			} else {
				sb.WriteRune(r)
			}
		}
	}
	sb.WriteByte('"')
}

// pyFloat is Python's repr of a float (json.dumps writes floats so):
// shortest round-trip digits, fixed notation for exponents -4..15 with at
// least one decimal, else d.ddde+XX.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	x, _ := strconv.Atoi(exp)
	if x < -4 || x >= 16 {
		sign := "+"
		if x < 0 {
			sign, x = "-", -x
		}
		return fmt.Sprintf("%se%s%02d", mant, sign, x)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// jinjaValue decodes one JSON value for a template: objects become ordered
// Dicts, arrays jinjaLists, integers int64, other numbers float64.
func jinjaValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := exec.NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := jinjaValue(dec)
				if err != nil {
					return nil, err
				}
				d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(v)})
			}
			_, err := dec.Token()
			return d, err
		case '[':
			list := jinjaList{}
			for dec.More() {
				v, err := jinjaValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		return t.Float64()
	}
	return tok, nil
}

// decodeJinja decodes a whole JSON document with jinjaValue.
func decodeJinja(raw []byte) (any, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	v, err := jinjaValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}
