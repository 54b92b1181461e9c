package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/weights"
)

func init() {
	register(command{name: "plan", summary: "Print how a model would be split over workers of given memory.", run: runPlan})
}

func runPlan(args []string, stdout, stderr io.Writer) error {
	var dir, mems string
	var pp, tp int
	var asJSON bool
	fs := newFlagSet("plan", "plan --model DIR --workers 8GiB,8GiB,16GiB [--pp N --tp M] [--json]", stderr)
	fs.StringVar(&dir, "model", defaultModel, "model directory (config.json + safetensors)")
	fs.StringVar(&mems, "workers", "", "comma-separated worker memories, e.g. 24GiB,24GiB,80GiB (one per worker)")
	fs.IntVar(&pp, "pp", 0, "pipeline stages (default: one per worker, or fewer when workers outnumber layers)")
	fs.IntVar(&tp, "tp", 0, "tensor-parallel ranks per stage (default: workers / pp)")
	fs.BoolVar(&asJSON, "json", false, "print the plan as JSON, as the coordinator stores it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if mems == "" {
		return fmt.Errorf("%w: --workers is required, e.g. --workers 8GiB,8GiB", errUsage)
	}
	var workers []plan.Worker
	for i, m := range strings.Split(mems, ",") {
		n, err := parseBytes(m)
		if err != nil {
			return err
		}
		workers = append(workers, plan.Worker{ID: fmt.Sprintf("worker-%d", i), Memory: n})
	}
	p, err := makePlan(dir, workers, pp, tp)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	fmt.Fprint(stdout, p)
	return nil
}

// makePlan plans the model in dir over workers; pp and tp of 0 take the
// planner's defaults, and a tp alone implies pp = workers/tp.
func makePlan(dir string, workers []plan.Worker, pp, tp int) (*plan.Plan, error) {
	s, err := spec.Load(dir)
	if err != nil {
		return nil, err
	}
	dt, err := weights.ElementSize(dir)
	if err != nil {
		return nil, err
	}
	opts := []plan.Option{plan.WithDTypeBytes(dt)}
	switch {
	case pp < 0 || tp < 0:
		return nil, fmt.Errorf("%w: --pp and --tp must be positive", errUsage)
	case pp == 0 && tp > 0:
		pp = len(workers) / tp
	case tp == 0 && pp > 0:
		tp = len(workers) / max(pp, 1)
	}
	if pp > 0 {
		opts = append(opts, plan.WithShape(pp, tp))
	}
	return plan.New(s, workers, opts...)
}

// parsePlanFlag reads --plan: "pp=2,tp=3" (equal workers, one per rank),
// inline JSON, or a JSON file as `tessera plan --json` prints it.
func parsePlanFlag(dir, v string) (*plan.Plan, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "{") {
		return plan.Parse([]byte(v))
	}
	if strings.HasSuffix(v, ".json") {
		raw, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("reading --plan: %w", err)
		}
		return plan.Parse(raw)
	}
	pp, tp := 1, 1
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n <= 0 || (k != "pp" && k != "tp") {
			return nil, fmt.Errorf("%w: --plan %q: want pp=N,tp=M, a JSON plan, or a .json file", errUsage, v)
		}
		if k == "pp" {
			pp = n
		} else {
			tp = n
		}
	}
	workers := make([]plan.Worker, pp*tp)
	for i := range workers {
		workers[i] = plan.Worker{ID: fmt.Sprintf("rank-%d", i)}
	}
	return makePlan(dir, workers, pp, tp)
}

// parseBytes reads sizes like 8GiB, 512MiB, 2GB or 1048576.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%w: %q is not a memory size (like 8GiB, 512MiB or 2GB)", errUsage, s)
	}
	return int64(f * float64(mult)), nil
}
