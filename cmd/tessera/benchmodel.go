package main

import (
	"context"
	"encoding/json"
	"flag"
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
	"github.com/tessera-llm/tessera/worker/model/modelbench"
	"github.com/tessera-llm/tessera/worker/weights"
)

func init() {
	register(command{name: "bench-model", summary: "Measure prompt and decode tokens/s of a model on this machine's CPU.", run: runBenchModel})
}

// benchModelReport is what bench-model prints (--json: as one object).
type benchModelReport struct {
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
	// BatchDecode is --batch: decode tokens/s with that many sequences
	// stepping together (modelbench.BatchDecode).
	BatchDecode []modelbench.BatchResult `json:"batch_decode,omitempty"`
}

// batchContext is the context each sequence of a --batch run is
// prefilled with before its timed steps.
const batchContext = 16

func runBenchModel(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("model", "", "model directory: Hugging Face config.json + model.safetensors")
	promptN := fs.Int("prompt", 128, "prompt tokens: one prefill forward, timed 3 times (the median is reported)")
	gen := fs.Int("gen", 64, "decode steps timed after the prompt")
	threads := fs.Int("threads", 0, "CPU threads (0: all cores)")
	quantize := fs.String("quantize", "", quantizeUsage)
	asJSON := fs.Bool("json", false, "print one JSON object")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the timed decode steps to this file (go tool pprof)")
	batchList := fs.String("batch", "", "also time decode with this many sequences per step, comma separated (e.g. 1,8,32)")
	random := fs.String("random-llama", "", "") // hidden: write random LLaMA weights hidden,layers,heads,kv,inter,vocab[,dtype] into --model first
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tessera bench-model --model DIR [--prompt 128] [--gen 64] [--threads N] [--quantize q8] [--json]")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case *dir == "":
		return fmt.Errorf("%w: --model is required", errUsage)
	case *promptN < 1 || *gen < 1:
		return fmt.Errorf("%w: --prompt and --gen must be at least 1", errUsage)
	}
	quant, err := parseQuantize(*quantize)
	if err != nil {
		return err
	}
	var batches []int
	for _, f := range strings.FieldsFunc(*batchList, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("%w: --batch: %q is not a positive integer", errUsage, f)
		}
		batches = append(batches, n)
	}
	if *random != "" {
		if err := writeRandomLlama(*dir, *random); err != nil {
			return err
		}
	}
	rep, err := benchModel(*dir, *promptN, *gen, *threads, quant, *profile, batches)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "model %s (%s), %d threads (simd %v), weights streamed per token %.1f MB, loaded in %.1fs\n",
		rep.Model, rep.Weights, rep.Threads, rep.SIMD, float64(rep.WeightBytes)/1e6, rep.LoadSeconds)
	fmt.Fprintf(stdout, "prompt  %4d tokens  %8.1f tok/s\n", rep.Prompt, rep.PromptTokPerS)
	fmt.Fprintf(stdout, "decode  %4d tokens  %8.1f tok/s  %.1f GB/s of weights\n", rep.Gen, rep.DecodeTokPerS, rep.WeightGBPerSec)
	for _, b := range rep.BatchDecode {
		fmt.Fprintf(stdout, "decode  batch %3d   %8.1f tok/s\n", b.Batch, b.TokensPerS)
	}
	return nil
}

// promptRuns is how many times bench-model times the prompt.
const promptRuns = 3

// benchModel loads dir and times a prompt of promptN tokens (the median of
// promptRuns) and gen decode steps after it, following an untimed warm-up.
func benchModel(dir string, promptN, gen, threads int, quant kernels.DType, profile string, batches []int) (*benchModelReport, error) {
	wb, dtype, err := streamedBytes(dir, quant)
	if err != nil {
		return nil, err
	}
	be := cpu.New(cpu.WithThreads(threads))
	t0 := time.Now()
	cacheTokens := promptN + gen + 16
	for _, b := range batches {
		cacheTokens = max(cacheTokens, modelbench.CacheTokens(b, batchContext, gen, 16))
	}
	m, err := model.Load(dir, model.WithBackend(be), model.WithCache(cacheTokens, 16), model.WithQuantize(quant))
	if err != nil {
		return nil, err
	}
	load := time.Since(t0)
	lm, ok := m.(model.CausalLM)
	if !ok {
		return nil, fmt.Errorf("%s: bench-model needs a causal LM", dir)
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
	var batched []modelbench.BatchResult
	for _, n := range batches {
		r, err := modelbench.BatchDecode(ctx, lm, be, n, batchContext, gen)
		if err != nil {
			return nil, err
		}
		r.TokensPerS = round(r.TokensPerS, 1)
		batched = append(batched, r)
	}
	return &benchModelReport{
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

// writeRandomLlama writes a LLaMA checkpoint of the given shape
// ("hidden,layers,heads,kv,inter,vocab[,dtype]", dtype F32 or BF16, BF16 by
// default) with uniform random weights into dir, for `make bench`.
func writeRandomLlama(dir, shape string) error {
	parts := strings.Split(shape, ",")
	if len(parts) != 6 && len(parts) != 7 {
		return fmt.Errorf("%w: --random-llama wants hidden,layers,heads,kv,inter,vocab[,dtype], got %q", errUsage, shape)
	}
	var v [6]int
	for i := range v {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 1 {
			return fmt.Errorf("%w: --random-llama: %q is not a positive integer", errUsage, parts[i])
		}
		v[i] = n
	}
	hidden, layers, heads, kv, inter, vocab := v[0], v[1], v[2], v[3], v[4], v[5]
	if hidden%heads != 0 || heads%kv != 0 {
		return fmt.Errorf("%w: --random-llama: heads must divide hidden and kv heads divide heads", errUsage)
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
		return fmt.Errorf("%w: --random-llama: %v", errUsage, werr)
	}
	return weights.Write(filepath.Join(dir, weights.SingleFileName), ts, nil)
}
