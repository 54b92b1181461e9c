// Package model loads a checkpoint into a runnable architecture. Each
// architecture lives in its own package (bloom, llama, ...) built from the
// shared blocks in model/nn, and registers a constructor under its card's
// model_type (shard/spec) in init. The loader reads the card: it refuses a
// tensor the card does not name, and checks each one's shape against it. Importing worker/model/all registers every architecture.
package model

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/weights"
)

// Model is a loaded architecture.
type Model interface {
	Spec() *spec.Spec
	Backend() kernels.Backend
}

// CausalLM is a decoder that extends sequences one batch at a time.
type CausalLM interface {
	Model
	// Cache is the KV memory the model's sequences live in.
	Cache() *kvcache.Cache
	// Forward runs batch.Tokens, appending each span's tokens to its
	// sequence, and writes logits [batch.LogitRows(), vocab].
	Forward(ctx context.Context, batch *Batch, logits kernels.Tensor) error
}

// Span is one sequence's run of tokens inside a Batch.
type Span struct {
	Seq *kvcache.Seq
	// N is how many consecutive batch tokens belong to Seq.
	N int
	// AllLogits asks for logits at every token of the span (prompt
	// scoring); otherwise only the last token's logits are produced.
	AllLogits bool
}

// Batch is the tokens of one step: several sequences' spans, concatenated.
type Batch struct {
	Tokens []int32
	Spans  []Span
}

// LogitRows is how many rows of logits Forward writes for the batch.
func (b *Batch) LogitRows() int {
	n := 0
	for _, s := range b.Spans {
		if s.AllLogits {
			n += s.N
		} else {
			n++
		}
	}
	return n
}

// Validate checks that the spans cover the tokens exactly.
func (b *Batch) Validate(vocab int) error {
	total := 0
	for i, s := range b.Spans {
		if s.N <= 0 || s.Seq == nil {
			return fmt.Errorf("%w: span %d has %d tokens", ErrBadBatch, i, s.N)
		}
		total += s.N
	}
	if total != len(b.Tokens) {
		return fmt.Errorf("%w: spans cover %d tokens, batch has %d", ErrBadBatch, total, len(b.Tokens))
	}
	for i, id := range b.Tokens {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: token %d at position %d is outside the vocabulary of %d", ErrBadBatch, id, i, vocab)
		}
	}
	return nil
}

var (
	// ErrBadBatch reports a malformed batch (bad ids or spans).
	ErrBadBatch = errors.New("invalid batch")
	// ErrContextFull reports a sequence longer than the cache or the model allows.
	ErrContextFull = errors.New("context length exceeded")
)

// Options configure Load.
type Options struct {
	Backend kernels.Backend
	// CacheTokens is the KV capacity in tokens (all sequences together).
	CacheTokens int
	BlockSize   int
	// Progress, if set, is called as tensors load.
	Progress func(Progress)
	// Shard, if set, loads one rank's slice of the model.
	Shard *Shard
	// Quantize, if set (kernels.Q8_0), converts every matrix that feeds a
	// matmul to that format as it loads; norms, biases and embedding
	// tables that only serve lookups keep the checkpoint's dtype.
	Quantize kernels.DType
}

// Option is a functional option for Load.
type Option func(*Options)

// WithBackend selects the compute backend (default: cpu).
func WithBackend(b kernels.Backend) Option { return func(o *Options) { o.Backend = b } }

// WithCache sizes the KV cache: tokens in total, in blocks of blockSize.
func WithCache(tokens, blockSize int) Option {
	return func(o *Options) { o.CacheTokens, o.BlockSize = tokens, blockSize }
}

// WithQuantize converts the model's matrices to dt at load (0: keep the
// checkpoint's dtype). The backend must implement kernels.Quantizer.
func WithQuantize(dt kernels.DType) Option { return func(o *Options) { o.Quantize = dt } }

// WithProgress reports loading progress.
func WithProgress(f func(Progress)) Option { return func(o *Options) { o.Progress = f } }

// Constructor builds an architecture from its checkpoint.
type Constructor func(l *Loader, s *spec.Spec, o *Options) (Model, error)

var (
	mu    sync.Mutex
	archs = map[string]Constructor{}
)

// Register adds the constructor of the architecture whose card (see
// spec.Register) has this model_type. Architectures call it in init.
func Register(arch string, c Constructor) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := archs[arch]; dup {
		panic("model: architecture registered twice: " + arch)
	}
	archs[arch] = c
}

// ErrUnsupportedArch reports a model_type with no registered architecture.
var ErrUnsupportedArch = errors.New("unsupported architecture")

// Load reads config.json and the safetensors weights from dir.
func Load(dir string, opts ...Option) (Model, error) {
	o := Options{CacheTokens: 4096, BlockSize: 16}
	for _, f := range opts {
		f(&o)
	}
	if o.Backend == nil {
		b, err := kernels.Open("cpu")
		if err != nil {
			return nil, err
		}
		o.Backend = b
	}
	if _, ok := o.Backend.(kernels.Quantizer); o.Quantize != 0 && !ok {
		return nil, fmt.Errorf("%w: the %s backend cannot convert weights to %v; load the checkpoint's dtype or use the cpu backend",
			kernels.ErrQuantize, o.Backend.Name(), o.Quantize)
	}
	s, err := spec.Load(dir)
	if err != nil {
		return nil, err
	}
	card, err := spec.CardOf(s.Arch)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	build, ok := archs[s.Arch]
	names := make([]string, 0, len(archs))
	for n := range archs {
		names = append(names, n)
	}
	mu.Unlock()
	if !ok {
		sort.Strings(names)
		return nil, fmt.Errorf("%w %q (this build serves: %s)", ErrUnsupportedArch, s.Arch, strings.Join(names, ", "))
	}
	if o.Shard != nil {
		if err := o.Shard.check(s); err != nil {
			return nil, err
		}
		if _, err := plan.Rules(s.Arch); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrShard, err)
		}
	}
	ckpt, err := weights.Open(dir)
	if err != nil {
		return nil, err
	}
	defer ckpt.Close()
	if err := checkSizes(s, card, ckpt); err != nil {
		return nil, fmt.Errorf("loading %s model from %s: %w", s.Arch, dir, err)
	}
	l := newLoader(o.Backend, ckpt, o.Progress)
	l.quant = o.Quantize
	l.spec, l.rules = s, card.Tensors
	if o.Shard != nil {
		l.rank = o.Shard.rank()
		l.shardTotals(o.Shard.Plan, o.Shard.Stage)
	}
	m, err := build(l, s, &o)
	if err == nil {
		err = l.Err()
	}
	if err == nil {
		err = serves(m, card.Serving)
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s model from %s: %w", s.Arch, dir, err)
	}
	return m, nil
}

// serves checks that a constructor built what its card says it serves.
func serves(m Model, how spec.Serving) error {
	var ok bool
	switch how {
	case spec.Causal:
		_, ok = m.(CausalLM)
	case spec.Encoder:
		_, ok = m.(Encoder)
	case spec.EncoderDecoder:
		_, ok = m.(Seq2SeqLM)
	}
	if !ok {
		return fmt.Errorf("%w: the card says %s, the constructor built a %T", ErrUnsupportedArch, how, m)
	}
	return nil
}

// NewCache sizes a KV cache for a model from its options: layers and
// kvHeads are what the rank holds.
func NewCache(b kernels.Backend, layers, kvHeads, headDim int, o *Options) (*kvcache.Cache, error) {
	bs, blocks := o.CacheBlocks()
	return kvcache.New(b, max(layers, 1), kvHeads, headDim, bs, blocks)
}

// CacheBlocks is the KV geometry the options ask for: block size and
// block count.
func (o *Options) CacheBlocks() (blockSize, blocks int) {
	bs := max(o.BlockSize, 1)
	return bs, max((o.CacheTokens+bs-1)/bs, 1)
}
