package modelbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
				size = int64(info.Shape[0]) * int64(info.Shape[1]+4*((info.Shape[1]+31)/32))
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

// ErrBadShape: WriteRandomLlama's shape is malformed.
var ErrBadShape = errors.New("bad random-llama shape")

// WriteRandomLlama writes a LLaMA checkpoint of the given shape
// ("hidden,layers,heads,kv,inter,vocab[,dtype]", dtype F32 or BF16, BF16 by
// default) with uniform random weights into dir, for `make bench`.
func WriteRandomLlama(dir, shape string) error {
	parts := strings.Split(shape, ",")
	if len(parts) != 6 && len(parts) != 7 {
		return fmt.Errorf("%w: want hidden,layers,heads,kv,inter,vocab[,dtype], got %q", ErrBadShape, shape)
	}
	var v [6]int
	for i := range v {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 1 {
			return fmt.Errorf("%w: %q is not a positive integer", ErrBadShape, parts[i])
		}
		v[i] = n
	}
	hidden, layers, heads, kv, inter, vocab := v[0], v[1], v[2], v[3], v[4], v[5]
	if hidden%heads != 0 || heads%kv != 0 {
		return fmt.Errorf("%w: heads must divide hidden and kv heads divide heads", ErrBadShape)
	}
	dt := weights.DType("BF16")
	if len(parts) == 7 {
		dt = weights.DType(strings.ToUpper(parts[6]))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, _ := json.Marshal(map[string]any{"model_type": "llama", "hidden_size": hidden, "num_hidden_layers": layers,
		"num_attention_heads": heads, "num_key_value_heads": kv, "intermediate_size": inter,
		"vocab_size": vocab, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []weights.WriteTensor
	var werr error
	add := func(name string, rows, cols int, ones bool) {
		vals := make([]float32, rows*cols)
		scale := float32(1 / math.Sqrt(float64(cols)))
		for i := range vals {
			vals[i] = 1
			if !ones {
				vals[i] = (rng.Float32()*2 - 1) * scale
			}
		}
		data, err := weights.EncodeFloat32(dt, vals)
		if err != nil && werr == nil {
			werr = err
		}
		shape := []int{rows, cols}
		if ones {
			shape = []int{cols}
		}
		ts = append(ts, weights.WriteTensor{Name: name, DType: dt, Shape: shape, Data: data})
	}
	d := hidden / heads
	add("model.embed_tokens.weight", vocab, hidden, false)
	for l := range layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, hidden, true)
		add(p+"post_attention_layernorm.weight", 1, hidden, true)
		add(p+"self_attn.q_proj.weight", heads*d, hidden, false)
		add(p+"self_attn.k_proj.weight", kv*d, hidden, false)
		add(p+"self_attn.v_proj.weight", kv*d, hidden, false)
		add(p+"self_attn.o_proj.weight", hidden, heads*d, false)
		add(p+"mlp.gate_proj.weight", inter, hidden, false)
		add(p+"mlp.up_proj.weight", inter, hidden, false)
		add(p+"mlp.down_proj.weight", hidden, inter, false)
	}
	add("model.norm.weight", 1, hidden, true)
	add("lm_head.weight", vocab, hidden, false)
	if werr != nil {
		return fmt.Errorf("%w: %v", ErrBadShape, werr)
	}
	return weights.Write(filepath.Join(dir, weights.SingleFileName), ts, nil)
}
