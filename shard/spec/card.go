package spec

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Serving says how a model is served.
type Serving int

const (
	// Causal models are decoders, planned over workers and extended one
	// batch at a time.
	Causal Serving = iota
	// Encoder models map a whole sequence to hidden states (embeddings,
	// fill-mask); the coordinator serves them in process.
	Encoder
	// EncoderDecoder models encode a source once per request and decode
	// like a causal model that also attends to it.
	EncoderDecoder
)

var servingNames = [...]string{"causal", "encoder", "encoder-decoder"}

func (s Serving) String() string { return enumString(servingNames[:], int(s), "serving") }

// Parser turns a decoded config.json into a Spec.
type Parser func(c Config) (*Spec, error)

// Card is everything Tessera knows about one architecture outside its
// kernels: the model package registers a constructor under the same name.
type Card struct {
	// ModelType is the config's model_type.
	ModelType string
	Parse     Parser
	Serving   Serving
	// Tensors are the checkpoint's tensors and how each is sliced, one
	// rule per tensor the model reads; the loader refuses a tensor the
	// card does not name. Nil for an architecture that loads only whole
	// (its constructor names its tensors itself).
	Tensors []Rule
}

// Shardable reports whether the card splits over pipeline stages and
// tensor-parallel ranks.
func (c *Card) Shardable() bool { return c.Tensors != nil }

var (
	mu    sync.Mutex
	cards = map[string]*Card{}
)

// Register adds an architecture's card. Cards register from init; a
// second card for one model_type is a programming error.
func Register(c Card) {
	if c.ModelType == "" || c.Parse == nil {
		panic("spec: a card needs a model_type and a parser")
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := cards[c.ModelType]; dup {
		panic("spec: model_type registered twice: " + c.ModelType)
	}
	cards[c.ModelType] = &c
}

// CardOf returns the card registered for a model_type.
func CardOf(modelType string) (*Card, error) {
	mu.Lock()
	c, ok := cards[modelType]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: model_type %q (supported: %s)", ErrUnsupportedArch, modelType, strings.Join(Supported(), ", "))
	}
	return c, nil
}

// Supported lists the registered model_types, sorted.
func Supported() []string {
	mu.Lock()
	defer mu.Unlock()
	out := make([]string, 0, len(cards))
	for k := range cards {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Serving is how the spec's architecture is served (Causal for a spec
// whose architecture has no card, such as one built by hand).
func (s *Spec) Serving() Serving {
	if c, err := CardOf(s.Arch); err == nil {
		return c.Serving
	}
	return Causal
}
