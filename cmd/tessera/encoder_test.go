package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/coordinator"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// A BERT model is served by the coordinator itself: /v1/embeddings is the
// mean of the golden last hidden state, /v1/fill-mask ranks the golden
// MLM logits.
func TestEncoderEndpoints(t *testing.T) {
	dir := filepath.Join(repoRoot, "testdata/golden/bert")
	sf := servingFlags{model: dir, modelName: "bert", listen: "127.0.0.1:0", cacheTokens: 1, blockSize: 1}
	o, err := sf.options(clusterFlags{}, logger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	p, err := coordinator.Start(context.Background(), nil, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	api := "http://" + p.Addr()
	var g modeltest.EncoderGolden
	modeltest.ReadGolden(t, dir, &g)
	// The API takes no segment ids, so the case must use segment 0 only.
	i := slices.IndexFunc(g.Cases, func(c modeltest.EncoderCase) bool {
		return !slices.ContainsFunc(c.TokenTypeIDs, func(tt int32) bool { return tt != 0 })
	})
	if i < 0 {
		t.Fatal("no BERT golden case uses segment 0 only")
	}
	c := g.Cases[i]
	post := func(path string, body any) map[string]any {
		b, _ := json.Marshal(body)
		resp, err := http.Post(api+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	emb := post("/v1/embeddings", map[string]any{"input": [][]int32{c.InputIDs}})
	vec := emb["data"].([]any)[0].(map[string]any)["embedding"].([]any)
	for d := range vec {
		var mean float64
		for _, row := range c.LastHiddenState {
			mean += row[d]
		}
		mean /= float64(len(c.LastHiddenState))
		if got := vec[d].(float64); math.Abs(got-mean) > 1e-4*math.Max(1, math.Abs(mean)) {
			t.Fatalf("embedding[%d] = %v, golden mean %v", d, got, mean)
		}
	}
	masked := append([]int32(nil), c.InputIDs...)
	pos := len(masked) / 2
	masked[pos] = 4 // [MASK]
	fm := post("/v1/fill-mask", map[string]any{"input": masked, "top_k": 3})
	masks := fm["data"].([]any)[0].(map[string]any)["masks"].([]any)
	cands := masks[0].(map[string]any)["candidates"].([]any)
	if len(masks) != 1 || len(cands) != 3 {
		t.Fatalf("fill-mask %v", fm)
	}
	// The golden logits are for the unmasked input; only check the shape
	// and that scores are probabilities in order.
	prev := 1.0
	for _, cd := range cands {
		s := cd.(map[string]any)["score"].(float64)
		if s <= 0 || s > prev {
			t.Fatalf("scores out of order: %v", cands)
		}
		prev = s
	}
	// Generation is refused on an encoder.
	resp, _ := http.Post(api+"/v1/completions", "application/json", strings.NewReader(`{"prompt": [1, 2]}`))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("completion on bert: %d", resp.StatusCode)
	}
}
