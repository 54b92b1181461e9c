package api

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"regexp"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// Limits on one request.
const (
	maxChoices     = 128 // n, best_of and self-consistency samples
	maxSequences   = 256 // prompts × best_of
	maxStopStrings = 16
	maxLogprobs    = 5  // /v1/completions logprobs
	maxTopLogprobs = 20 // /v1/chat/completions top_logprobs
)

// params are the generation parameters every front end (completions,
// chat, gRPC) decodes into; nil means "not given".
type params struct {
	MaxTokens         *int
	MinTokens         *int
	Temperature       *float64
	TopP              *float64
	TopK              *int
	MinP              *float64
	N                 *int
	BestOf            *int
	Seed              *int64
	Stop              []string
	StopIDs           []int32
	PresencePenalty   *float64
	FrequencyPenalty  *float64
	RepetitionPenalty *float64
	// Logprobs is how many alternatives to return per token; nil: no
	// logprobs at all.
	Logprobs       *int
	Echo           bool
	IgnoreEOS      bool
	ReturnTokenIDs bool
	Stream         bool
	Consistency    *selfConsistency
}

// selfConsistency is the request's "self_consistency" object.
type selfConsistency struct {
	Samples       int    `json:"samples"`
	AnswerPattern string `json:"answer_pattern"`
}

// genRequest is a validated generation: one scheduler request per
// sequence, built by seqRequest.
type genRequest struct {
	prompts [][]int32
	n       int // choices returned per prompt
	bestOf  int // sequences generated per prompt (≥ n)
	base    scheduler.Request
	seed    uint64
	stops   []string
	// logprobs is -1 for none, else the alternatives per token.
	logprobs       int
	echo           bool
	returnTokenIDs bool
	stream         bool
	consistency    *regexp.Regexp
}

// seqRequest is the scheduler request of sequence j (of bestOf) for
// prompt p. Sequence k = p·bestOf + j samples with the seed derived from
// (seed, k): k = 0 uses the seed itself, so n = 1 and the first choice of
// n > 1 agree.
func (g *genRequest) seqRequest(p, j int) scheduler.Request {
	r := g.base
	r.Prompt = g.prompts[p]
	r.Sampling.Seed = deriveSeed(g.seed, p*g.bestOf+j)
	return r
}

func deriveSeed(seed uint64, k int) uint64 {
	if k == 0 {
		return seed
	}
	// splitmix64 of (seed, k): independent streams per choice.
	z := seed + uint64(k)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// build validates p for prompts and turns it into a genRequest.
// defaultMax is max_tokens when absent (0: what the context leaves, up to
// 256).
func (s *Server) build(p *params, prompts [][]int32, defaultMax int, maxLP int) (*genRequest, error) {
	if s.cfg.Scheduler == nil {
		return nil, badRequest("model", "model %q is an encoder: it serves /v1/embeddings and /v1/fill-mask, not generation", s.cfg.Model)
	}
	if len(prompts) == 0 {
		return nil, badRequest("prompt", "prompt is required")
	}
	g := &genRequest{prompts: prompts, n: 1, logprobs: -1, echo: p.Echo, returnTokenIDs: p.ReturnTokenIDs, stream: p.Stream}
	r := &g.base
	r.IgnoreEOS = p.IgnoreEOS
	r.Sampling = sampling.Params{Temperature: 1}
	if v := p.Temperature; v != nil {
		if *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) {
			return nil, badRequest("temperature", "temperature must be a finite number ≥ 0, got %v", *v)
		}
		r.Sampling.Temperature = *v
	}
	if v := p.TopP; v != nil {
		if !(*v > 0 && *v <= 1) {
			return nil, badRequest("top_p", "top_p must be in (0, 1], got %v", *v)
		}
		r.Sampling.TopP = *v
	}
	if v := p.TopK; v != nil {
		switch {
		case *v == -1 || *v == 0: // vLLM's "off"
		case *v < 0:
			return nil, badRequest("top_k", "top_k must be ≥ 1, or 0 or -1 for no limit; got %d", *v)
		default:
			r.Sampling.TopK = *v
		}
		if *v > s.cfg.Scheduler.Config().TopK {
			// Candidates come from the ranks' merged top-K: more is
			// the same as no limit.
			r.Sampling.TopK = 0
		}
	}
	if v := p.MinP; v != nil {
		if !(*v >= 0 && *v <= 1) {
			return nil, badRequest("min_p", "min_p must be in [0, 1], got %v", *v)
		}
		r.Sampling.MinP = *v
	}
	if v := p.N; v != nil {
		if *v < 1 || *v > maxChoices {
			return nil, badRequest("n", "n must be in [1, %d], got %d", maxChoices, *v)
		}
		g.n = *v
	}
	g.bestOf = g.n
	if v := p.BestOf; v != nil {
		if *v < g.n || *v > maxChoices {
			return nil, badRequest("best_of", "best_of must be in [n, %d] (n is %d), got %d", maxChoices, g.n, *v)
		}
		g.bestOf = *v
	}
	if g.bestOf > g.n && p.Stream {
		return nil, badRequest("best_of", "best_of > n cannot stream: the best sequences are known only at the end")
	}
	if p.Consistency != nil {
		c := p.Consistency
		if c.Samples < 1 || c.Samples > maxChoices {
			return nil, badRequest("self_consistency.samples", "self_consistency.samples must be in [1, %d], got %d", maxChoices, c.Samples)
		}
		if c.AnswerPattern == "" {
			return nil, badRequest("self_consistency.answer_pattern", "self_consistency.answer_pattern is required")
		}
		re, err := regexp.Compile(c.AnswerPattern)
		if err != nil {
			return nil, badRequest("self_consistency.answer_pattern", "self_consistency.answer_pattern: %v", err)
		}
		if p.Stream {
			return nil, badRequest("stream", "self_consistency cannot stream: the vote needs every chain")
		}
		if s.cfg.Tokenizer == nil {
			return nil, badRequest("self_consistency", "self_consistency extracts answers from text: this model has no tokenizer")
		}
		g.consistency = re
		g.n, g.bestOf = c.Samples, c.Samples
	}
	if len(prompts)*g.bestOf > maxSequences {
		return nil, badRequest("n", "%d prompts × %d sequences each is over the limit of %d sequences per request", len(prompts), g.bestOf, maxSequences)
	}
	if p.Seed != nil {
		g.seed = uint64(*p.Seed)
	} else {
		g.seed = rand.Uint64()
	}
	for name, v := range map[string]*float64{"presence_penalty": p.PresencePenalty, "frequency_penalty": p.FrequencyPenalty} {
		if v != nil && !(*v >= -2 && *v <= 2) {
			return nil, badRequest(name, "%s must be in [-2, 2], got %v", name, *v)
		}
	}
	if v := p.PresencePenalty; v != nil {
		r.PresencePenalty = *v
	}
	if v := p.FrequencyPenalty; v != nil {
		r.FrequencyPenalty = *v
	}
	if v := p.RepetitionPenalty; v != nil {
		if !(*v > 0) || math.IsInf(*v, 0) {
			return nil, badRequest("repetition_penalty", "repetition_penalty must be a finite number > 0 (1 is none), got %v", *v)
		}
		r.RepetitionPenalty = *v
	}
	if v := p.Logprobs; v != nil {
		if *v < 0 || *v > maxLP {
			return nil, badRequest("logprobs", "logprobs must be in [0, %d], got %d", maxLP, *v)
		}
		g.logprobs = *v
		r.TopLogprobs = *v
	}
	if len(p.Stop) > maxStopStrings {
		return nil, badRequest("stop", "at most %d stop strings, got %d", maxStopStrings, len(p.Stop))
	}
	for _, st := range p.Stop {
		if st == "" {
			return nil, badRequest("stop", "stop strings must not be empty")
		}
	}
	if len(p.Stop) > 0 && s.cfg.Tokenizer == nil {
		return nil, badRequest("stop", "stop strings need a tokenizer; this model has none: use token ids")
	}
	g.stops = p.Stop
	vocab := s.cfg.Scheduler.Config().Vocab
	for _, id := range p.StopIDs {
		if id < 0 || int(id) >= vocab {
			return nil, badRequest("stop", "stop token id %d is outside the vocabulary of %d", id, vocab)
		}
	}
	r.StopIDs = p.StopIDs
	limit := s.cfg.Scheduler.Config().MaxContext
	longest := 0
	for i, pr := range prompts {
		if len(pr) == 0 {
			return nil, badRequest("prompt", "prompt %d is empty", i)
		}
		for j, id := range pr {
			if id < 0 || int(id) >= vocab {
				return nil, badRequest("prompt", "prompt token %d at position %d is outside the vocabulary of %d", id, j, vocab)
			}
		}
		longest = max(longest, len(pr))
	}
	switch {
	case p.MaxTokens != nil:
		r.MaxTokens = *p.MaxTokens
		if r.MaxTokens < 1 {
			return nil, badRequest("max_tokens", "max_tokens must be at least 1, got %d", r.MaxTokens)
		}
	case defaultMax > 0:
		r.MaxTokens = defaultMax
	default:
		r.MaxTokens = max(min(256, limit-longest), 1)
	}
	if longest+r.MaxTokens > limit {
		return nil, badRequest("max_tokens", "this model's maximum context length is %d tokens, but the prompt has %d tokens and max_tokens is %d (%d in all): shorten the prompt or lower max_tokens",
			limit, longest, r.MaxTokens, longest+r.MaxTokens)
	}
	if v := p.MinTokens; v != nil {
		if *v < 0 || *v > r.MaxTokens {
			return nil, badRequest("min_tokens", "min_tokens must be in [0, max_tokens=%d], got %d", r.MaxTokens, *v)
		}
		r.MinTokens = *v
	}
	return g, nil
}

// stopField decodes "stop": a string, a list of strings, or a list of
// token ids.
func stopField(raw json.RawMessage) ([]string, []int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, nil, nil
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil {
		return nil, ids, nil
	}
	return nil, nil, badRequest("stop", "stop must be a string, a list of strings or a list of token ids")
}

// prompts decodes "prompt": a string, a list of strings, a list of token
// ids, or a list of lists of token ids (a batch: one or more choices per
// prompt).
func (s *Server) prompts(raw json.RawMessage) ([][]int32, []string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, badRequest("prompt", "prompt is required")
	}
	var texts []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		texts = []string{one}
	} else if json.Unmarshal(raw, &texts) != nil {
		texts = nil
	}
	if texts != nil {
		if s.cfg.Tokenizer == nil {
			return nil, nil, badRequest("prompt", "this model has no tokenizer.json: send the prompt as token ids")
		}
		out := make([][]int32, len(texts))
		for i, t := range texts {
			ids, err := s.cfg.Tokenizer.Encode(t, true)
			if err != nil {
				return nil, nil, badRequest("prompt", "tokenizing prompt %d: %v", i, err)
			}
			out[i] = ids
		}
		if len(out) == 0 {
			return nil, nil, badRequest("prompt", "prompt is an empty list")
		}
		return out, texts, nil
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil {
		return [][]int32{ids}, nil, nil
	}
	var batch [][]int32
	if err := json.Unmarshal(raw, &batch); err != nil || len(batch) == 0 {
		return nil, nil, badRequest("prompt", "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids")
	}
	return batch, nil, nil
}
