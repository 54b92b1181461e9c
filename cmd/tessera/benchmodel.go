package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tessera-llm/tessera/worker/model/modelbench"
)

func init() {
	register(command{name: "bench-model", summary: "Measure prompt and decode tokens/s of a model on this machine's CPU.", run: runBenchModel})
}

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
	random := fs.String("random-llama", "", "")   // hidden: write random LLaMA weights hidden,layers,heads,kv,inter,vocab[,dtype] into --model first
	shards := fs.Int("shards", 1, "")             // hidden: --random-llama writes this many safetensors files and an index
	writeOnly := fs.Bool("write-only", false, "") // hidden: --random-llama writes the model and stops (a checkpoint too big to bench here)
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
	case *shards < 1:
		return fmt.Errorf("%w: --shards must be at least 1", errUsage)
	case (*shards > 1 || *writeOnly) && *random == "":
		return fmt.Errorf("%w: --shards and --write-only go with --random-llama", errUsage)
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
		shape, dt, err := modelbench.ParseLlamaShape(*random)
		if err != nil {
			return fmt.Errorf("%w: --random-llama: %v", errUsage, err)
		}
		if err := modelbench.WriteRandomLlama(*dir, shape, dt, *shards); err != nil {
			return err
		}
		if *writeOnly {
			return nil
		}
	}
	rep, err := modelbench.Run(*dir, modelbench.Options{Prompt: *promptN, Gen: *gen, Threads: *threads, Quantize: quant, Profile: *profile, Batches: batches})
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
