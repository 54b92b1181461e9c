package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// encoding is the internal result of Encode, with byte offsets. Token
// strings are only stored where they differ from the id's own string
// (Unigram's unknown pieces), which keeps the hot path free of pointers.
type encoding struct {
	ids     []int32
	offsets [][2]int32
	vals    map[int]string
	canon   func(int32) string
}

// add appends a token; tok "" means the id's own string.
func (e *encoding) add(id int32, tok string, a, b int) {
	if tok != "" && e.canon(id) != tok {
		if e.vals == nil {
			e.vals = map[int]string{}
		}
		e.vals[len(e.ids)] = tok
	}
	e.ids = append(e.ids, id)
	// Not append(e.offsets, [2]int32{a, b}): see appendPair.
	n := len(e.offsets)
	e.offsets = append(e.offsets, [2]int32{})
	e.offsets[n][0], e.offsets[n][1] = int32(a), int32(b)
}

func (e *encoding) token(i int) string {
	if v, ok := e.vals[i]; ok {
		return v
	}
	return e.canon(e.ids[i])
}

// splice replaces e with before + e + after (special tokens at [0, 0]).
func (e *encoding) splice(beforeIDs []int32, beforeToks []string, afterIDs []int32, afterToks []string) {
	out := encoding{canon: e.canon, ids: make([]int32, 0, len(e.ids)+len(beforeIDs)+len(afterIDs))}
	for k, id := range beforeIDs {
		out.add(id, beforeToks[k], 0, 0)
	}
	for i, id := range e.ids {
		out.add(id, e.token(i), int(e.offsets[i][0]), int(e.offsets[i][1]))
	}
	for k, id := range afterIDs {
		out.add(id, afterToks[k], 0, 0)
	}
	*e = out
}

// postProcessor adds special tokens (when addSpecial) and may adjust offsets.
type postProcessor interface {
	process(e *encoding, addSpecial bool)
}

var postProcessorBuilders = map[string]func(raw json.RawMessage) (postProcessor, error){}

func init() {
	postProcessorBuilders["TemplateProcessing"] = newTemplate
	postProcessorBuilders["BertProcessing"] = func(raw json.RawMessage) (postProcessor, error) {
		var c struct {
			Sep specialPair `json:"sep"`
			Cls specialPair `json:"cls"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		return wrapProcessor{cls: c.Cls, sep: c.Sep}, nil
	}
	postProcessorBuilders["RobertaProcessing"] = func(raw json.RawMessage) (postProcessor, error) {
		c := struct {
			Sep            specialPair `json:"sep"`
			Cls            specialPair `json:"cls"`
			TrimOffsets    bool        `json:"trim_offsets"`
			AddPrefixSpace bool        `json:"add_prefix_space"`
		}{TrimOffsets: true, AddPrefixSpace: true}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		return wrapProcessor{cls: c.Cls, sep: c.Sep, trim: c.TrimOffsets, prefixSpace: c.AddPrefixSpace}, nil
	}
	postProcessorBuilders["ByteLevel"] = func(raw json.RawMessage) (postProcessor, error) {
		c := struct {
			TrimOffsets    bool `json:"trim_offsets"`
			AddPrefixSpace bool `json:"add_prefix_space"`
		}{TrimOffsets: true, AddPrefixSpace: true}
		err := json.Unmarshal(raw, &c)
		return byteLevelPost{c.TrimOffsets, c.AddPrefixSpace}, err
	}
	postProcessorBuilders["Sequence"] = func(raw json.RawMessage) (postProcessor, error) {
		seq, err := buildList(raw, "processors", buildPostProcessor)
		return seqPost(seq), err
	}
}

func buildPostProcessor(raw json.RawMessage) (postProcessor, error) {
	return build(raw, "post_processor", postProcessorBuilders)
}

type seqPost []postProcessor

func (s seqPost) process(e *encoding, addSpecial bool) {
	for _, p := range s {
		p.process(e, addSpecial)
	}
}

// specialPair is HF's ["[CLS]", 101].
type specialPair struct {
	tok string
	id  int32
}

func (p *specialPair) UnmarshalJSON(b []byte) error {
	var v []any
	if err := json.Unmarshal(b, &v); err != nil || len(v) != 2 {
		return fmt.Errorf("%w: special token %s is not [token, id]", ErrMalformed, b)
	}
	tok, ok1 := v[0].(string)
	id, ok2 := v[1].(float64)
	if !ok1 || !ok2 || id < 0 || id > 1<<31-1 {
		return fmt.Errorf("%w: special token %s is not [token, id]", ErrMalformed, b)
	}
	p.tok, p.id = tok, int32(id)
	return nil
}

// wrapProcessor is BertProcessing ([CLS] A [SEP]) and RobertaProcessing
// (<s> A </s>, with ByteLevel offset trimming).
type wrapProcessor struct {
	cls, sep          specialPair
	trim, prefixSpace bool
}

func (w wrapProcessor) process(e *encoding, addSpecial bool) {
	if w.trim {
		trimOffsets(e, w.prefixSpace)
	}
	if !addSpecial {
		return
	}
	e.splice([]int32{w.cls.id}, []string{w.cls.tok}, []int32{w.sep.id}, []string{w.sep.tok})
}

type byteLevelPost struct{ trim, prefixSpace bool }

func (b byteLevelPost) process(e *encoding, _ bool) {
	if b.trim {
		trimOffsets(e, b.prefixSpace)
	}
}

// trimOffsets is HF's ByteLevel::process_offsets: offsets stop covering the
// leading and trailing spaces of each token.
func trimOffsets(e *encoding, addPrefixSpace bool) {
	isSpace := func(r rune) bool { return r == 'Ġ' || isWhitespace(r) }
	for i := range e.ids {
		tok := e.token(i)
		lead, trail := 0, 0
		for _, r := range tok {
			if !isSpace(r) {
				break
			}
			lead++
		}
		for s := tok; s != ""; {
			r, sz := utf8.DecodeLastRuneInString(s)
			if !isSpace(r) {
				break
			}
			trail++
			s = s[:len(s)-sz]
		}
		o := &e.offsets[i]
		if lead > 0 {
			if (i == 0 || o[0] == 0) && addPrefixSpace && lead == 1 {
				lead = 0
			}
			o[0] = min(o[0]+int32(lead), o[1])
		}
		if trail > 0 && o[1] >= int32(trail) {
			o[1] = max(o[1]-int32(trail), o[0])
		}
	}
}

// template is TemplateProcessing for single sequences.
type template struct {
	items []templateItem
}

type templateItem struct {
	special bool
	ids     []int32
	tokens  []string
}

func newTemplate(raw json.RawMessage) (postProcessor, error) {
	var c struct {
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		Special map[string]struct {
			ID     string   `json:"id"`
			IDs    []int32  `json:"ids"`
			Tokens []string `json:"tokens"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	var t template
	for i, it := range c.Single {
		switch {
		case it.SpecialToken != nil:
			sp, ok := c.Special[it.SpecialToken.ID]
			if !ok || len(sp.IDs) != len(sp.Tokens) {
				return nil, fmt.Errorf("%w: TemplateProcessing single[%d]: special token %q is not defined in special_tokens", ErrMalformed, i, it.SpecialToken.ID)
			}
			t.items = append(t.items, templateItem{special: true, ids: sp.IDs, tokens: sp.Tokens})
		case it.Sequence != nil:
			t.items = append(t.items, templateItem{})
		default:
			return nil, fmt.Errorf("%w: TemplateProcessing single[%d] is neither SpecialToken nor Sequence", ErrMalformed, i)
		}
	}
	return t, nil
}

func (t template) process(e *encoding, addSpecial bool) {
	if !addSpecial {
		return
	}
	var beforeIDs, afterIDs []int32
	var beforeToks, afterToks []string
	seq := false
	for _, it := range t.items {
		switch {
		case !it.special:
			seq = true
		case seq:
			afterIDs, afterToks = append(afterIDs, it.ids...), append(afterToks, it.tokens...)
		default:
			beforeIDs, beforeToks = append(beforeIDs, it.ids...), append(beforeToks, it.tokens...)
		}
	}
	e.splice(beforeIDs, beforeToks, afterIDs, afterToks)
}
