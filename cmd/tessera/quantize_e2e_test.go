package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// TestQuantizedCluster: two worker processes started with --quantize q8
// serve a pp=2 plan (whole layers per stage, so each shard quantizes
// exactly the blocks the unsharded model does). Greedy tokens and their
// logprobs through the HTTP API equal the Q8_0 model run in this process,
// and the logprobs differ from the unquantized model's, so the workers did
// convert their weights.
func TestQuantizedCluster(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-q8"
	dir := filepath.Join(repoRoot, "testdata/golden/llama")
	_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", "pp=2,tp=1")
	startWorkers(t, in, cluster, 2, 0, "--quantize", "q8")
	waitStatus(t, api+"/ready", 200, 30*time.Second)

	q8 := greedyLogprobs(t, dir, kernels.Q8_0)
	full := greedyLogprobs(t, dir, 0)
	var apart float64 // the largest |q8 - unquantized| logprob seen
	for i, c := range modeltest.LoadGolden(t, dir).Cases {
		n := len(c.GreedyIDs)
		body := greedyBody(c.PromptIDs, n)
		body["logprobs"] = 0
		got := complete(t, api, body).Choices[0]
		want := q8(c.PromptIDs, n)
		if fmt.Sprint(got.TokenIDs) != fmt.Sprint(want.ids) {
			t.Fatalf("case %d: cluster %v, in-process Q8_0 %v", i, got.TokenIDs, want.ids)
		}
		if got.Logprobs == nil || len(got.Logprobs.TokenLogprobs) != n {
			t.Fatalf("case %d: logprobs %+v, want %d", i, got.Logprobs, n)
		}
		ref := full(c.PromptIDs, n)
		for j, lp := range got.Logprobs.TokenLogprobs {
			if math.Abs(lp-want.logprobs[j]) > 1e-3 {
				t.Errorf("case %d token %d: logprob %.5f, in-process Q8_0 %.5f", i, j, lp, want.logprobs[j])
			}
			if fmt.Sprint(ref.ids[:j+1]) == fmt.Sprint(want.ids[:j+1]) {
				apart = max(apart, math.Abs(want.logprobs[j]-ref.logprobs[j]))
			}
		}
	}
	if apart < 1e-3 {
		t.Errorf("Q8_0 and unquantized logprobs agree within %.2g: the comparison cannot tell whether the workers quantized", apart)
	}
}

type greedyRun struct {
	ids      []int32
	logprobs []float64
}

// greedyLogprobs loads dir in this process (quantized to quant unless 0)
// and returns a function that decodes greedily, with each token's logprob.
func greedyLogprobs(t *testing.T, dir string, quant kernels.DType) func(prompt []int32, n int) greedyRun {
	m, err := model.Load(dir, model.WithQuantize(quant))
	if err != nil {
		t.Fatal(err)
	}
	gen := engine.New(m.(model.CausalLM))
	return func(prompt []int32, n int) greedyRun {
		var r greedyRun
		ids, err := gen.Generate(context.Background(), prompt, n, engine.SamplerFunc(topk.Argmax), nil, func(s engine.Step) {
			// The greedy token is the top one, so its logprob is the merge's first.
			_, lps, _ := topk.Merge([]topk.Partial{topk.Local(s.Logits, 0, 1)}, 1)
			r.logprobs = append(r.logprobs, lps[0])
		})
		if err != nil {
			t.Fatal(err)
		}
		r.ids = ids
		return r
	}
}
