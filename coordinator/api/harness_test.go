package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

const (
	testVocab   = 4096 // docbloom's
	testBlockSz = 4
)

// fakeModel plays the workers: it keeps KV per physical block (as the
// workers do, so shared prefix blocks work) and produces logits that
// depend on the whole history, so batching mistakes change outputs.
type fakeModel struct {
	mu sync.Mutex
	kv map[int32][]int32
}

// PlanVersion is constant: the fake's workers never change.
func (f *fakeModel) PlanVersion(context.Context) (uint64, error) { return 1, nil }

func (f *fakeModel) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kv == nil {
		f.kv = map[int32][]int32{}
	}
	var rows [][]topk.Partial
	off := 0
	for _, sp := range st.Spans {
		n := int(sp.Tokens)
		var h []int32
		for p := range int(sp.Cached) {
			b := sp.BlockTable[p/testBlockSz]
			h = append(h, f.kv[b][p%testBlockSz])
		}
		for i, tok := range st.Tokens[off : off+n] {
			p := int(sp.Cached) + i
			b := sp.BlockTable[p/testBlockSz]
			slot := f.kv[b]
			if p%testBlockSz == 0 {
				slot = nil
			}
			f.kv[b] = append(slot[:min(len(slot), p%testBlockSz)], tok)
			h = append(h, tok)
		}
		off += n
		logits := fakeLogits(h)
		if len(sp.Allow) > 0 {
			topk.Mask(logits, 0, sp.Allow) // as each worker rank does
		}
		rows = append(rows, []topk.Partial{topk.Local(logits, 0, int(st.TopK))})
	}
	return rows, nil
}

// fakeLogits favours a few tokens per history, so sampling has real
// choices and greedy a clear winner.
func fakeLogits(h []int32) []float32 {
	hs := fnv.New64a()
	var b [4]byte
	for _, t := range h {
		b[0], b[1], b[2], b[3] = byte(t), byte(t>>8), byte(t>>16), byte(t>>24)
		hs.Write(b[:])
	}
	seed := hs.Sum64()
	logits := make([]float32, testVocab)
	for i := range logits {
		logits[i] = -4
	}
	// Avoid the special ids 0..3 (EOS is 2) so outputs have text.
	for j := range 8 {
		seed = seed*6364136223846793005 + 1442695040888963407
		logits[4+int(seed>>33)%(testVocab-4)] = float32(8 - j)
	}
	return logits
}

type testServer struct {
	*httptest.Server
	sched *scheduler.Scheduler
	api   *Server
	ready bool
}

type serverOpt func(*Config, *scheduler.Config)

func newTestServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	tk, err := tokenizer.Load("../../models/docbloom-3m/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	scfg := scheduler.Config{Blocks: 1024, BlockSize: testBlockSz, Vocab: testVocab, MaxContext: 1024, EOS: 2, MaxQueue: 256}
	cfg := Config{Model: "docbloom-3m", Tokenizer: HF(tk)}
	for _, o := range opts {
		o(&cfg, &scfg)
	}
	ts := &testServer{ready: true}
	sched := scheduler.New(scfg, &fakeModel{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sched.Run(ctx); close(done) }()
	cfg.Scheduler = sched
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return ts.ready }
	}
	ts.sched, ts.api = sched, New(cfg)
	ts.Server = httptest.NewServer(ts.api)
	t.Cleanup(func() {
		ts.Close()
		cancel()
		<-done
	})
	return ts
}

// post sends a JSON body and returns the status and decoded body.
func (ts *testServer) post(t testing.TB, path string, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	req, _ := http.NewRequest("POST", ts.URL+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: %d, not JSON: %s", path, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

// stream posts with stream: true and returns the decoded data chunks.
func (ts *testServer) stream(t testing.TB, path string, body map[string]any) []map[string]any {
	t.Helper()
	body["stream"] = true
	raw, _ := json.Marshal(body)
	resp, err := http.Post(ts.URL+path, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream %s: %d %s", path, resp.StatusCode, data)
	}
	var chunks []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sawDone := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			sawDone = true
			continue
		}
		var c map[string]any
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		chunks = append(chunks, c)
	}
	if !sawDone {
		t.Fatal("stream ended without [DONE]")
	}
	return chunks
}

func choices(body map[string]any) []map[string]any {
	list, _ := body["choices"].([]any)
	out := make([]map[string]any, len(list))
	for i, c := range list {
		out[i], _ = c.(map[string]any)
	}
	return out
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

func ints(v any) []int32 {
	list, _ := v.([]any)
	out := make([]int32, len(list))
	for i, x := range list {
		f, _ := x.(float64)
		out[i] = int32(f)
	}
	return out
}
