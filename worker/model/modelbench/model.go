package modelbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/weights"
)

// Report is one model's single-sequence prompt and decode speed.
type Report struct {
	Model   string `json:"model"`
	Threads int    `json:"threads"`
	SIMD    bool   `json:"simd"`
	// Weights is the matrices' format: the checkpoint's dtype, or Q8_0.
	Weights string `json:"weights"`
	Prompt  int    `json:"prompt_tokens"`
	Gen     int    `json:"gen_tokens"`
	// WeightBytes is what one decode step streams: every tensor of the
	// checkpoint except an embedding table that lm_head does not share
	// (decode reads one row of it); quantized, the 2-D tensors count at
	// 1 byte per weight plus a 4-byte scale per 32.
	WeightBytes    int64   `json:"weight_bytes"`
	LoadSeconds    float64 `json:"load_seconds"`
	PromptTokPerS  float64 `json:"prompt_tokens_per_s"`
	DecodeTokPerS  float64 `json:"decode_tokens_per_s"`
	WeightGBPerSec float64 `json:"weight_gb_per_s"`
	// BatchDecode is Options.Batches' decode tokens/s, each with that
	// many sequences stepping together (BatchDecode).
	BatchDecode []BatchResult `json:"batch_decode,omitempty"`
}

// batchContext is the context each sequence of a batched run is
// prefilled with before its timed steps.
const batchContext = 16

// promptRuns is how many times Run times the prompt.
const promptRuns = 3

// Options are one Run's sizes.
type Options struct {
	// Prompt is the prompt's length, Gen the timed decode steps after it.
	Prompt, Gen int
	// Threads is the CPU backend's thread count (0: all cores).
	Threads  int
	Quantize kernels.DType
	// Profile, when set, is a file for a CPU profile of the decode steps.
	Profile string
	// Batches are batch sizes to time BatchDecode at, Gen steps each.
	Batches []int
}

// Run loads dir on the CPU backend and times a prompt of o.Prompt tokens
// (the median of promptRuns) and o.Gen decode steps after it, following
// an untimed warm-up.
func Run(dir string, o Options) (*Report, error) {
	promptN, gen, threads, quant, profile := o.Prompt, o.Gen, o.Threads, o.Quantize, o.Profile
	wb, dtype, err := streamedBytes(dir, quant)
	if err != nil {
		return nil, err
	}
	be := cpu.New(cpu.WithThreads(threads))
	t0 := time.Now()
	cacheTokens := promptN + gen + 16
	for _, b := range o.Batches {
		cacheTokens = max(cacheTokens, CacheTokens(b, batchContext, gen, 16))
	}
	m, err := model.Load(dir, model.WithBackend(be), model.WithCache(cacheTokens, 16), model.WithQuantize(quant))
	if err != nil {
		return nil, err
	}
	load := time.Since(t0)
	lm, ok := m.(model.CausalLM)
	if !ok {
		return nil, fmt.Errorf("%s: modelbench needs a causal LM", dir)
	}
	vocab := lm.Spec().Vocab
	logits := be.Alloc(1, vocab)
	ctx := context.Background()
	ids := make([]int32, promptN)
	for i := range ids {
		ids[i] = int32((i*7919 + 13) % vocab)
	}
	// A GLM prompt must end with [gMASK] and <bos> (chatglm.go); the
	// other architectures take any ids.
	if gmask, ok := lm.Spec().Extra["gmask_token_id"]; ok && promptN >= 2 {
		ids[promptN-2], ids[promptN-1] = int32(gmask), int32(lm.Spec().BOS)
	}
	var seq kvcache.Seq
	forward := func(toks []int32) error {
		b := model.Batch{Tokens: toks, Spans: []model.Span{{Seq: &seq, N: len(toks)}}}
		return lm.Forward(ctx, &b, logits)
	}
	// Warm-up: page the weights in and size the workspaces for both the
	// prompt and single-token steps.
	if err := forward(ids); err != nil {
		return nil, err
	}
	tok := []int32{0}
	for i := range 4 {
		tok[0] = int32(i)
		if err := forward(tok); err != nil {
			return nil, err
		}
	}
	// The prompt is timed promptRuns times and reported as the median: one
	// forward lasts well under a second, where a neighbour's burst on a
	// shared machine moves a single timing by tens of percent.
	var runs [promptRuns]time.Duration
	for r := range runs {
		lm.Cache().Release(&seq)
		t0 = time.Now()
		if err := forward(ids); err != nil {
			return nil, err
		}
		runs[r] = time.Since(t0)
	}
	slices.Sort(runs[:])
	prompt := runs[promptRuns/2]
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	t0 = time.Now()
	for i := range gen {
		tok[0] = int32((i*31 + 7) % vocab)
		if err := forward(tok); err != nil {
			return nil, err
		}
	}
	decode := time.Since(t0)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	lm.Cache().Release(&seq)

	dec := float64(gen) / decode.Seconds()
	var batched []BatchResult
	for _, n := range o.Batches {
		r, err := BatchDecode(ctx, lm, be, n, batchContext, gen)
		if err != nil {
			return nil, err
		}
		r.TokensPerS = round(r.TokensPerS, 1)
		batched = append(batched, r)
	}
	return &Report{
		Model: dir, Threads: be.Threads(), SIMD: cpu.SIMD(), Weights: dtype, Prompt: promptN, Gen: gen,
		WeightBytes: wb, LoadSeconds: round(load.Seconds(), 2),
		PromptTokPerS:  round(float64(promptN)/prompt.Seconds(), 1),
		DecodeTokPerS:  round(dec, 2),
		WeightGBPerSec: round(float64(wb)*dec/1e9, 2),
		BatchDecode:    batched,
	}, nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// streamedBytes sums the checkpoint's tensor bytes, less the token
// embedding table when a separate lm_head exists, with 2-D tensors at
// quant's size when set. It also names the matrices' dtype.
func streamedBytes(dir string, quant kernels.DType) (int64, string, error) {
	c, err := weights.Open(dir)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	var total, embed int64
	head := false
	dtype := quant.String()
	for _, n := range c.Names() {
		info, _ := c.Info(n)
		size := info.Size
		if len(info.Shape) == 2 {
			if quant == kernels.Q8_0 {
				size = int64(info.Shape[0]) * int64(info.Shape[1]+2*((info.Shape[1]+31)/32)) // a float16 scale per 32
			} else {
				dtype = string(info.DType)
			}
		}
		total += size
		switch {
		case strings.HasSuffix(n, "embed_tokens.weight"):
			embed += size
		case strings.HasSuffix(n, "lm_head.weight"):
			head = true
		}
	}
	if head {
		total -= embed
	}
	return total, dtype, nil
}

// ErrBadShape: a random-llama shape is malformed.
var ErrBadShape = errors.New("bad random-llama shape")

// LlamaShape is a LLaMA geometry for random checkpoints.
type LlamaShape struct {
	Hidden, Layers, Heads, KVHeads, Inter, Vocab int
}

// ParseLlamaShape reads "hidden,layers,heads,kv,inter,vocab[,dtype]" (dtype
// F32, F16 or BF16, BF16 by default).
func ParseLlamaShape(shape string) (LlamaShape, weights.DType, error) {
	parts := strings.Split(shape, ",")
	if len(parts) != 6 && len(parts) != 7 {
		return LlamaShape{}, "", fmt.Errorf("%w: want hidden,layers,heads,kv,inter,vocab[,dtype], got %q", ErrBadShape, shape)
	}
	var v [6]int
	for i := range v {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 1 {
			return LlamaShape{}, "", fmt.Errorf("%w: %q is not a positive integer", ErrBadShape, parts[i])
		}
		v[i] = n
	}
	s := LlamaShape{Hidden: v[0], Layers: v[1], Heads: v[2], KVHeads: v[3], Inter: v[4], Vocab: v[5]}
	if s.Hidden%s.Heads != 0 || s.Heads%s.KVHeads != 0 {
		return LlamaShape{}, "", fmt.Errorf("%w: heads must divide hidden and kv heads divide heads", ErrBadShape)
	}
	dt := weights.DType("BF16")
	if len(parts) == 7 {
		dt = weights.DType(strings.ToUpper(parts[6]))
	}
	if _, err := weights.EncodeFloat32(dt, nil); err != nil {
		return LlamaShape{}, "", fmt.Errorf("%w: %v", ErrBadShape, err)
	}
	return s, dt, nil
}

// WriteRandomLlama writes config.json and a LLaMA checkpoint of shape s in
// dt with uniform random weights into dir, for benchmarks: one
// model.safetensors, or with shards > 1 that many files and an index, as
// Hugging Face saves large models. Weights are drawn as they are written,
// a chunk at a time, so an 8B checkpoint never sits in memory.
func WriteRandomLlama(dir string, s LlamaShape, dt weights.DType, shards int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, _ := json.Marshal(map[string]any{"model_type": "llama", "hidden_size": s.Hidden, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "intermediate_size": s.Inter,
		"vocab_size": s.Vocab, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	// One generator, drawn in file order, so the weights depend only on the shape.
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []weights.WriteTensor
	add := func(name string, rows, cols int, ones bool) {
		shape := []int{rows, cols}
		if ones {
			shape = []int{cols}
		}
		scale := float32(1 / math.Sqrt(float64(cols)))
		fill := func(w io.Writer) error {
			const chunk = 1 << 16
			vals := make([]float32, chunk)
			for left := rows * cols; left > 0; left -= len(vals) {
				vals = vals[:min(chunk, left)]
				for i := range vals {
					vals[i] = 1
					if !ones {
						vals[i] = (rng.Float32()*2 - 1) * scale
					}
				}
				data, err := weights.EncodeFloat32(dt, vals)
				if err != nil {
					return err
				}
				if _, err := w.Write(data); err != nil {
					return err
				}
			}
			return nil
		}
		ts = append(ts, weights.WriteTensor{Name: name, DType: dt, Shape: shape, Fill: fill})
	}
	d := s.Hidden / s.Heads
	add("model.embed_tokens.weight", s.Vocab, s.Hidden, false)
	for l := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, s.Hidden, true)
		add(p+"post_attention_layernorm.weight", 1, s.Hidden, true)
		add(p+"self_attn.q_proj.weight", s.Heads*d, s.Hidden, false)
		add(p+"self_attn.k_proj.weight", s.KVHeads*d, s.Hidden, false)
		add(p+"self_attn.v_proj.weight", s.KVHeads*d, s.Hidden, false)
		add(p+"self_attn.o_proj.weight", s.Hidden, s.Heads*d, false)
		add(p+"mlp.gate_proj.weight", s.Inter, s.Hidden, false)
		add(p+"mlp.up_proj.weight", s.Inter, s.Hidden, false)
		add(p+"mlp.down_proj.weight", s.Hidden, s.Inter, false)
	}
	add("model.norm.weight", 1, s.Hidden, true)
	add("lm_head.weight", s.Vocab, s.Hidden, false)
	if shards > 1 {
		return weights.WriteSharded(dir, ts, shards)
	}
	return weights.Write(filepath.Join(dir, weights.SingleFileName), ts, nil)
}
