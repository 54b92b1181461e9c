package api

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tessera-llm/tessera/coordinator/guide"
)

// guidedFields are the ways a request constrains its output: OpenAI's
// response_format, and vLLM's guided_regex, guided_choice and guided_json.
// At most one may be given.
type guidedFields struct {
	ResponseFormat json.RawMessage `json:"response_format"`
	GuidedRegex    *string         `json:"guided_regex"`
	GuidedChoice   []string        `json:"guided_choice"`
	GuidedJSON     json.RawMessage `json:"guided_json"`
}

// guided is a constraint and the request field that stated it.
type guided struct {
	spec  guide.Spec
	field string
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// guided reads the constraint fields, nil when there is none.
func (f *guidedFields) guided() (*guided, error) {
	var out []*guided
	if present(f.ResponseFormat) {
		var rf struct {
			Type       string `json:"type"`
			JSONSchema *struct {
				Name   string          `json:"name"`
				Schema json.RawMessage `json:"schema"`
				Strict *bool           `json:"strict"`
			} `json:"json_schema"`
		}
		if err := json.Unmarshal(f.ResponseFormat, &rf); err != nil {
			return nil, badRequest("response_format", "response_format must be an object with a type: %v", err)
		}
		switch rf.Type {
		case "text":
		case "json_object":
			out = append(out, &guided{guide.Spec{Kind: guide.JSONObject}, "response_format"})
		case "json_schema":
			if rf.JSONSchema == nil || !present(rf.JSONSchema.Schema) {
				return nil, badRequest("response_format", "response_format json_schema needs json_schema.schema")
			}
			out = append(out, &guided{guide.Spec{Kind: guide.JSONSchema, Schema: rf.JSONSchema.Schema}, "response_format"})
		default:
			return nil, badRequest("response_format", "response_format.type %q is not one of text, json_object, json_schema", rf.Type)
		}
	}
	if f.GuidedRegex != nil {
		out = append(out, &guided{guide.Spec{Kind: guide.Regex, Pattern: *f.GuidedRegex}, "guided_regex"})
	}
	if f.GuidedChoice != nil {
		out = append(out, &guided{guide.Spec{Kind: guide.Choice, Choices: f.GuidedChoice}, "guided_choice"})
	}
	if present(f.GuidedJSON) {
		out = append(out, &guided{guide.Spec{Kind: guide.JSONSchema, Schema: f.GuidedJSON}, "guided_json"})
	}
	switch len(out) {
	case 0:
		return nil, nil
	case 1:
		return out[0], nil
	}
	names := make([]string, len(out))
	for i, g := range out {
		names[i] = g.field
	}
	return nil, badRequest(out[1].field, "at most one of response_format (json), guided_regex, guided_choice and guided_json; got %s", strings.Join(names, ", "))
}

// piecer is what a tokenizer needs for structured outputs: the bytes each
// token adds to the text.
type piecer interface {
	Piece(id int32) ([]byte, bool)
}

// Piece makes the HF tokenizer a piecer.
func (a hfTokenizer) Piece(id int32) ([]byte, bool) { return a.t.Piece(id) }

// pieceStream detokenizes a guided sequence as the guide checked it: each
// token adds its mid-sequence bytes. A decoder would differ at the start,
// where LLaMA's (Metaspace, Strip) drops the first space, which the
// constraint may require.
type pieceStream struct {
	p    piecer
	held []byte // the start of a character that later tokens complete
}

func (d *pieceStream) Add(id int32) (string, error) {
	b, _ := d.p.Piece(id) // special tokens (EOS) add nothing
	d.held = append(d.held, b...)
	n := len(d.held)
	// Hold back an incomplete last character, if any.
	for i := max(n-utf8.UTFMax+1, 0); i < n; i++ {
		if utf8.RuneStart(d.held[i]) && !utf8.FullRune(d.held[i:]) {
			n = i
			break
		}
	}
	out := string(d.held[:n])
	d.held = append(d.held[:0], d.held[n:]...)
	return out, nil
}

func (d *pieceStream) Flush() string {
	out := string(d.held)
	d.held = d.held[:0]
	return out
}

// guides compiles constraints against the model's vocabulary, once per
// constraint: the compiled automaton and its masks are shared by every
// request that states the same constraint.
type guides struct {
	once  sync.Once
	vocab *guide.Vocab
	mu    sync.Mutex
	cache map[string]*guide.Matcher
	order []string
}

// maxCachedGuides bounds the compiled constraints kept.
const maxCachedGuides = 64

// matcher compiles g for this server's model, or answers why it cannot.
func (s *Server) matcher(g *guided) (*guide.Matcher, error) {
	sched, err := s.generator()
	if err != nil {
		return nil, err
	}
	pc, ok := s.cfg.Tokenizer.(piecer)
	if !ok {
		return nil, badRequest(g.field, "%s needs the model's tokenizer to map text to tokens; this model has none", g.field)
	}
	c := &s.guides
	c.once.Do(func() {
		var eos []int32
		if e := sched.Config().EOS; e >= 0 {
			eos = []int32{e}
		}
		c.vocab = guide.NewVocab(sched.Config().Vocab, pc.Piece, eos)
		c.cache = map[string]*guide.Matcher{}
	})
	key := g.spec.Key()
	c.mu.Lock()
	m := c.cache[key]
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	// Compiled outside the lock: a large constraint must not hold up
	// requests with other constraints.
	m, err = guide.NewMatcher(g.spec, c.vocab)
	if err != nil {
		for _, e := range []error{guide.ErrInvalid, guide.ErrUnsupported, guide.ErrTooLarge, guide.ErrUnsatisfiable} {
			if errors.Is(err, e) {
				return nil, badRequest(g.field, "%s: %v", g.field, err)
			}
		}
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.cache[key]; ok {
		return old, nil
	}
	if len(c.order) >= maxCachedGuides {
		delete(c.cache, c.order[0])
		c.order = c.order[1:]
	}
	c.cache[key] = m
	c.order = append(c.order, key)
	return m, nil
}
