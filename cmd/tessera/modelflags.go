package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tessera-llm/tessera/coordinator/tokenizer"
	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
)

// modelFlags are the flags every one-shot model command shares.
type modelFlags struct {
	dir       string
	promptIDs string
	text      string
	json      bool
	device    string
	plan      string
	quantize  string
}

func (m *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.dir, "model", defaultModel, "model directory: Hugging Face config.json + model.safetensors")
	fs.StringVar(&m.promptIDs, "prompt-ids", "", "prompt as comma-separated token ids, e.g. 5,77,300")
	fs.StringVar(&m.text, "prompt", "", "prompt as text, tokenized with the model folder's tokenizer.json")
	fs.BoolVar(&m.json, "json", false, "print one JSON object on stdout and no progress")
	fs.StringVar(&m.device, "device", "cpu", "compute backend: cpu, or cuda:N in a build made with 'make cuda'")
	fs.StringVar(&m.quantize, "quantize", "", quantizeUsage)
}

// quantizeUsage documents every command's --quantize.
const quantizeUsage = "convert weights at load: q8 (8-bit blocks of 32 with a scale: about half the bytes of bf16, " +
	"logits within 6% of the checkpoint's); empty keeps the checkpoint's dtype"

// parseQuantize reads --quantize.
func parseQuantize(s string) (kernels.DType, error) {
	dt, err := kernels.ParseQuantization(s)
	if err != nil {
		return 0, fmt.Errorf("%w: --quantize: %v", errUsage, err)
	}
	return dt, nil
}

// registerPlan adds --plan, for commands that can run a model sharded.
func (m *modelFlags) registerPlan(fs *flag.FlagSet) {
	fs.StringVar(&m.plan, "plan", "", "run sharded in this process: pp=N,tp=M, a JSON plan, or a .json file from 'tessera plan --json'")
}

// defaultModel is the bundled model, relative to the repository root.
const defaultModel = "models/docbloom-3m"

// load opens the model, showing progress on a terminal unless quiet.
func (m *modelFlags) load(stderr io.Writer, opts ...model.Option) (model.Model, error) {
	quant, err := parseQuantize(m.quantize)
	if err != nil {
		return nil, err
	}
	b, err := openDevice(m.device)
	if err != nil {
		return nil, err
	}
	opts = append(opts, model.WithBackend(b), model.WithQuantize(quant))
	if m.plan != "" {
		p, err := parsePlanFlag(m.dir, m.plan)
		if err != nil {
			return nil, err
		}
		return engine.LoadPipeline(m.dir, p, opts...)
	}
	if !m.json && isTerminal(stderr) {
		opts = append(opts, model.WithProgress(progressPrinter(stderr)))
	}
	return model.Load(m.dir, opts...)
}

func (m *modelFlags) prompt() ([]int32, error) {
	if m.text != "" {
		if m.promptIDs != "" {
			return nil, fmt.Errorf("%w: give --prompt or --prompt-ids, not both", errUsage)
		}
		tok, err := m.tokenizer()
		if err != nil {
			return nil, err
		}
		if tok == nil {
			return nil, fmt.Errorf("%w: %s has no tokenizer.json; give --prompt-ids", errUsage, m.dir)
		}
		enc, err := tok.Encode(m.text, true)
		if err != nil {
			return nil, err
		}
		if len(enc.IDs) == 0 {
			return nil, fmt.Errorf("%w: --prompt tokenizes to nothing", errUsage)
		}
		return enc.IDs, nil
	}
	ids, err := parseIDs(m.promptIDs)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: --prompt or --prompt-ids is required", errUsage)
	}
	return ids, nil
}

// tokenizer loads the model folder's tokenizer.json; nil when it has none.
func (m *modelFlags) tokenizer() (*tokenizer.Tokenizer, error) {
	t, err := tokenizer.Load(filepath.Join(m.dir, "tokenizer.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return t, err
}

// loadCausal loads the model and requires a causal LM.
func (m *modelFlags) loadCausal(stderr io.Writer) (model.CausalLM, error) {
	loaded, err := m.load(stderr)
	if err != nil {
		return nil, err
	}
	return causal(loaded)
}

func causal(m model.Model) (model.CausalLM, error) {
	lm, ok := m.(model.CausalLM)
	if !ok {
		return nil, fmt.Errorf("%s is not a causal language model; this command needs one", m.Spec().Arch)
	}
	return lm, nil
}

// progressPrinter redraws one status line as tensors load.
func progressPrinter(w io.Writer) func(model.Progress) {
	return func(p model.Progress) {
		fmt.Fprintf(w, "\rloading: %d/%d tensors, %.1f/%.1f MB", p.Tensors, p.TotalTensors,
			float64(p.Bytes)/1e6, float64(p.TotalBytes)/1e6)
		if p.Tensors == p.TotalTensors {
			fmt.Fprintln(w)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
