package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/tessera-llm/tessera/coordinator/guide"
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
	LogitBias         map[int32]float64
	// Logprobs is how many alternatives to return per token; nil: no
	// logprobs at all.
	Logprobs       *int
	Echo           bool
	IgnoreEOS      bool
	ReturnTokenIDs bool
	Stream         bool
	Consistency    *selfConsistency
	// Guided constrains the output (structured outputs); nil: free text.
	Guided *guided
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

// generator is the scheduler, or the refusal an encoder model gives
// every generation endpoint.
func (s *Server) generator() (*scheduler.Scheduler, error) {
	if s.cfg.Scheduler == nil {
		return nil, badRequest("model", "model %q is an encoder: it serves /v1/embeddings and /v1/fill-mask, not generation", s.cfg.Model)
	}
	return s.cfg.Scheduler, nil
}

// build turns p for prompts into a genRequest whose every sequence passes
// the scheduler's Check: the API's own rules (OpenAI's limits, the
// choices, stop strings) are here, the sampling ranges are
// sampling.Params.Validate's and the request's are scheduler.Check's.
// defaultMax is max_tokens when absent (0: what the context leaves, up to
// 256); maxLP bounds logprobs, whose request field is lpParam.
func (s *Server) build(p *params, prompts [][]int32, defaultMax int, maxLP int, lpParam string) (*genRequest, error) {
	sched, err := s.generator()
	if err != nil {
		return nil, err
	}
	if len(prompts) == 0 {
		return nil, badRequest("prompt", "prompt is required")
	}
	g := &genRequest{prompts: prompts, n: 1, logprobs: -1, echo: p.Echo, returnTokenIDs: p.ReturnTokenIDs, stream: p.Stream}
	if err := g.choices(p, s.cfg.Tokenizer != nil); err != nil {
		return nil, err
	}
	if p.Seed != nil {
		g.seed = uint64(*p.Seed)
	} else {
		g.seed = rand.Uint64()
	}
	r := &g.base
	r.IgnoreEOS = p.IgnoreEOS
	if r.Sampling, err = p.sampling(sched.Config().Vocab); err != nil {
		return nil, err
	}
	if v := p.Logprobs; v != nil {
		if *v < 0 || *v > maxLP {
			return nil, badRequest(lpParam, "%s must be in [0, %d], got %d", lpParam, maxLP, *v)
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
	r.StopIDs = p.StopIDs
	longest := 0
	for _, pr := range prompts {
		longest = max(longest, len(pr))
	}
	switch {
	case p.MaxTokens != nil:
		r.MaxTokens = *p.MaxTokens
	case defaultMax > 0:
		r.MaxTokens = defaultMax
	default:
		r.MaxTokens = max(min(256, sched.Config().MaxContext-longest), 1)
	}
	if p.MinTokens != nil {
		r.MinTokens = *p.MinTokens
	}
	if p.Guided != nil {
		if r.Guide, err = s.matcher(p.Guided); err != nil {
			return nil, err
		}
	}
	for i := range prompts {
		if err := sched.Check(g.seqRequest(i, 0)); err != nil {
			var re *scheduler.RequestError
			if len(prompts) > 1 && errors.As(err, &re) {
				return nil, &scheduler.RequestError{Field: re.Field, Err: re.Err, Msg: fmt.Sprintf("prompt %d: %s", i, re.Msg)}
			}
			return nil, err
		}
	}
	return g, nil
}

// choices applies n, best_of and self_consistency, which decide how many
// sequences run and how many are returned.
func (g *genRequest) choices(p *params, hasTokenizer bool) error {
	if v := p.N; v != nil {
		if *v < 1 || *v > maxChoices {
			return badRequest("n", "n must be in [1, %d], got %d", maxChoices, *v)
		}
		g.n = *v
	}
	g.bestOf = g.n
	if v := p.BestOf; v != nil {
		if *v < g.n || *v > maxChoices {
			return badRequest("best_of", "best_of must be in [n, %d] (n is %d), got %d", maxChoices, g.n, *v)
		}
		g.bestOf = *v
	}
	if g.bestOf > g.n && p.Stream {
		return badRequest("best_of", "best_of > n cannot stream: the best sequences are known only at the end")
	}
	if c := p.Consistency; c != nil {
		if c.Samples < 1 || c.Samples > maxChoices {
			return badRequest("self_consistency.samples", "self_consistency.samples must be in [1, %d], got %d", maxChoices, c.Samples)
		}
		if c.AnswerPattern == "" && p.Guided != nil && p.Guided.spec.Kind == guide.Choice {
			// The chains answer with one of the choices: the vote is over
			// the allowed answers.
			c.AnswerPattern = `(?s)^(.*)$`
		}
		if c.AnswerPattern == "" {
			return badRequest("self_consistency.answer_pattern", "self_consistency.answer_pattern is required (or guided_choice, whose choices are the answers)")
		}
		re, err := regexp.Compile(c.AnswerPattern)
		if err != nil {
			return badRequest("self_consistency.answer_pattern", "self_consistency.answer_pattern: %v", err)
		}
		if p.Stream {
			return badRequest("stream", "self_consistency cannot stream: the vote needs every chain")
		}
		if !hasTokenizer {
			return badRequest("self_consistency", "self_consistency extracts answers from text: this model has no tokenizer")
		}
		g.consistency = re
		g.n, g.bestOf = c.Samples, c.Samples
	}
	if len(g.prompts)*g.bestOf > maxSequences {
		return badRequest("n", "%d prompts × %d sequences each is over the limit of %d sequences per request", len(g.prompts), g.bestOf, maxSequences)
	}
	return nil
}

// sampling maps the request's sampling fields onto sampling.Params, whose
// Validate judges their ranges. What is left here is spelling: vLLM's -1
// for no top_k, a top_k past the vocabulary, OpenAI's narrower range for
// two penalties, and the zeros Params reads as "off" (top_p and
// repetition_penalty), which a request must not use to mean 0.
func (p *params) sampling(vocab int) (sampling.Params, error) {
	sp := sampling.Params{Temperature: 1, LogitBias: p.LogitBias}
	if v := p.Temperature; v != nil {
		sp.Temperature = *v
	}
	if v := p.TopK; v != nil {
		sp.TopK = *v
		if *v == -1 || *v >= vocab {
			sp.TopK = 0 // vLLM's "off", or the whole vocabulary: no limit
		}
	}
	if v := p.TopP; v != nil {
		if *v == 0 {
			return sp, badRequest("top_p", "top_p must be in (0, 1], got 0")
		}
		sp.TopP = *v
	}
	if v := p.MinP; v != nil {
		sp.MinP = *v
	}
	for name, v := range map[string]*float64{"presence_penalty": p.PresencePenalty, "frequency_penalty": p.FrequencyPenalty} {
		if v != nil && !(*v >= -2 && *v <= 2) {
			return sp, badRequest(name, "%s must be in [-2, 2], got %v", name, *v)
		}
	}
	if v := p.PresencePenalty; v != nil {
		sp.PresencePenalty = *v
	}
	if v := p.FrequencyPenalty; v != nil {
		sp.FrequencyPenalty = *v
	}
	if v := p.RepetitionPenalty; v != nil {
		if *v == 0 {
			return sp, badRequest("repetition_penalty", "repetition_penalty must be a finite number > 0 (1 is none), got 0")
		}
		sp.RepetitionPenalty = *v
	}
	return sp, nil
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

// prompts decodes "prompt" (named param in errors): a string, a list of
// strings, a list of token ids, or a list of lists of token ids (a batch:
// one or more choices per prompt). Texts are tokenized with at most limit
// tokens each.
func (s *Server) prompts(ctx context.Context, raw json.RawMessage, limit int, param string) ([][]int32, []string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, badRequest(param, "%s is required", param)
	}
	var texts []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		texts = []string{one}
	} else if json.Unmarshal(raw, &texts) != nil {
		texts = nil
	}
	if texts != nil {
		if len(texts) == 0 {
			return nil, nil, badRequest(param, "%s is an empty list", param)
		}
		out := make([][]int32, len(texts))
		for i, t := range texts {
			name := param
			if len(texts) > 1 {
				name = fmt.Sprintf("%s %d", param, i)
			}
			ids, err := s.encodeText(ctx, t, true, limit, name)
			if err != nil {
				if ae, ok := err.(*apiError); ok {
					ae.param = param
				}
				return nil, nil, err
			}
			out[i] = ids
		}
		return out, texts, nil
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil {
		return [][]int32{ids}, nil, nil
	}
	var batch [][]int32
	if err := json.Unmarshal(raw, &batch); err != nil || len(batch) == 0 {
		return nil, nil, badRequest(param, "%s must be a string, a list of strings, a list of token ids or a list of lists of token ids", param)
	}
	return batch, nil, nil
}

// logitBiasField decodes "logit_bias": token ids (as JSON object keys)
// to biases.
func logitBiasField(raw map[string]float64) (map[int32]float64, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[int32]float64, len(raw))
	for k, v := range raw {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil {
			return nil, badRequest("logit_bias", "logit_bias key %q is not a token id", k)
		}
		out[int32(id)] = v
	}
	return out, nil
}
