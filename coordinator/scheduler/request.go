package scheduler

import (
	"errors"
	"fmt"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/sampling"
	"github.com/tessera-llm/tessera/shard/topk"
)

// Request is one generation.
type Request struct {
	Prompt    []int32
	MaxTokens int
	// MinTokens suppresses EOS and stop ids until this many tokens exist.
	MinTokens int
	// Sampling holds the sampler's knobs, penalties and logit bias.
	Sampling sampling.Params
	// StopIDs end generation (the stop token is kept); EOS does too
	// unless IgnoreEOS.
	StopIDs   []int32
	IgnoreEOS bool
	// TopLogprobs asks for this many alternatives per token.
	TopLogprobs int
	// Guide, when set, constrains the output (structured outputs): each
	// sampled row is masked to the tokens that keep the text completable,
	// and the sequence stops once the text is a match nothing can extend.
	Guide *guide.Matcher
}

// RequestError is an impossible request, naming the field at fault by
// its API name; it wraps ErrInvalid or ErrTooLong.
type RequestError struct {
	Field string
	Msg   string
	Err   error
}

func (e *RequestError) Error() string { return e.Msg }

func (e *RequestError) Unwrap() error { return e.Err }

func invalid(field, format string, a ...any) error {
	return &RequestError{Field: field, Msg: fmt.Sprintf(format, a...), Err: ErrInvalid}
}

// Check reports why req cannot run here, or nil: the one rule for a
// valid request. The API builds requests that pass it and reports its
// errors; Submit asserts it again.
func (s *Scheduler) Check(req Request) error {
	c := &s.cfg
	switch {
	case len(req.Prompt) == 0:
		return invalid("prompt", "the prompt is empty")
	case req.MaxTokens < 1:
		return invalid("max_tokens", "max_tokens must be at least 1, got %d", req.MaxTokens)
	case len(req.Prompt)+req.MaxTokens > c.MaxContext:
		return &RequestError{Field: "max_tokens", Err: ErrTooLong, Msg: fmt.Sprintf(
			"this model's maximum context length is %d tokens, but the prompt has %d tokens and max_tokens is %d (%d in all): shorten the prompt or lower max_tokens",
			c.MaxContext, len(req.Prompt), req.MaxTokens, len(req.Prompt)+req.MaxTokens)}
	case req.MinTokens < 0 || req.MinTokens > req.MaxTokens:
		return invalid("min_tokens", "min_tokens must be in [0, max_tokens=%d], got %d", req.MaxTokens, req.MinTokens)
	case req.TopLogprobs < 0 || req.TopLogprobs > topk.MaxTopK:
		return invalid("top_logprobs", "top_logprobs must be in [0, %d], got %d", topk.MaxTopK, req.TopLogprobs)
	case req.Sampling.TopK > topk.MaxTopK:
		return invalid("top_k", "top_k must be at most %d (0 for no limit), got %d", topk.MaxTopK, req.Sampling.TopK)
	case s.width(req) > topk.MaxTopK:
		return invalid("logit_bias", "%d logit_bias entries widen the candidates past %d: use fewer", req.Sampling.Widen(), topk.MaxTopK)
	}
	for i, id := range req.Prompt {
		if id < 0 || int(id) >= c.Vocab {
			return invalid("prompt", "prompt token %d at position %d is outside the vocabulary of %d", id, i, c.Vocab)
		}
	}
	for _, id := range req.StopIDs {
		if id < 0 || int(id) >= c.Vocab {
			return invalid("stop_token_ids", "stop token id %d is outside the vocabulary of %d", id, c.Vocab)
		}
	}
	for id := range req.Sampling.LogitBias {
		if int(id) >= c.Vocab {
			return invalid("logit_bias", "logit_bias token id %d is outside the vocabulary of %d", id, c.Vocab)
		}
	}
	var pe *sampling.ParamError
	if errors.As(req.Sampling.Validate(), &pe) {
		return &RequestError{Field: pe.Param, Msg: pe.Msg, Err: ErrInvalid}
	}
	return nil
}

// width is how many candidates req's row needs from each rank: the
// configured count, its top_k or top_logprobs if more, and one more per
// biased token (sampling.Params.Widen).
func (s *Scheduler) width(req Request) int {
	return max(s.cfg.TopK, req.Sampling.TopK, req.TopLogprobs) + req.Sampling.Widen()
}
