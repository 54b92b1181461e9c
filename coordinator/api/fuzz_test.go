package api

import (
	"testing"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

// FuzzCompletionRequest: any request body decodes into a valid request or
// an error, never a panic; a request that validates stays within the
// limits the scheduler needs.
func FuzzCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt": "Parameters\n", "max_tokens": 8, "temperature": 0}`,
		`{"prompt": [1, 2, 3], "n": 2, "best_of": 3, "seed": -5, "logprobs": 2, "echo": true}`,
		`{"prompt": [[1, 2], [3]], "stop": [5, 6], "stop_token_ids": [7]}`,
		`{"prompt": ["a", "b"], "stop": ["\n", "x"], "top_p": 0.5, "top_k": -1, "min_p": 0.1}`,
		`{"prompt": "a", "self_consistency": {"samples": 3, "answer_pattern": "(\\d+)"}}`,
		`{"prompt": "a", "max_tokens": 99999999999}`,
		`{"prompt": "a", "temperature": 1e309}`,
		`{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 3}`,
		`{"prompt": "\xff"}`, `[]`, `null`, `{"prompt": {}}`,
	} {
		f.Add([]byte(s))
	}
	tk, err := tokenizer.Load("../../models/docbloom-3m/tokenizer.json")
	if err != nil {
		f.Fatal(err)
	}
	sched := scheduler.New(scheduler.Config{Blocks: 256, BlockSize: 4, Vocab: testVocab, MaxContext: 1024, EOS: 2}, &fakeModel{})
	s := New(Config{Model: "m", Scheduler: sched, Tokenizer: HF(tk)})
	limit := sched.Config().MaxContext
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, g, _, err := s.parseCompletion(body); err == nil {
			for p := range g.prompts {
				for j := range g.bestOf {
					r := g.seqRequest(p, j)
					if len(r.Prompt) == 0 || r.MaxTokens < 1 || len(r.Prompt)+r.MaxTokens > limit {
						t.Fatalf("validated an impossible request: %d prompt tokens, max_tokens %d", len(r.Prompt), r.MaxTokens)
					}
					if err := r.Sampling.Validate(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		_, _, _ = s.parseChat(body)
	})
}
