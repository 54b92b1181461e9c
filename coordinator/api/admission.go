package api

import (
	"context"
	"errors"

	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

// maxBytesPerToken bounds how many bytes of text one token stands for.
// Real text averages about 4; a prompt over limit × maxBytesPerToken bytes
// cannot fit limit tokens, so it is refused before any tokenizing. (A
// vocabulary with tokens longer than this could in theory fit such a
// prompt; docs/api.md says so.)
const maxBytesPerToken = 64

// limitEncoder is a Tokenizer that can stop once a text passes limit
// tokens, answering tokenizer.ErrTooManyTokens (HF's can); others are
// limited by bytes alone.
type limitEncoder interface {
	EncodeLimit(text string, addSpecial bool, limit int) ([]int32, error)
}

// encodeText tokenizes a prompt of at most limit tokens, named param in
// errors: admission before work. A text too long for limit is refused by
// its length before tokenizing, a tokenizer that can stops once limit is
// passed, and at most Config.MaxTokenizing requests tokenize at once (the
// others wait, until ctx ends), so memory stays bounded by the limits,
// not by what clients send.
func (s *Server) encodeText(ctx context.Context, text string, addSpecial bool, limit int, param string) ([]int32, error) {
	if s.cfg.Tokenizer == nil {
		return nil, badRequest(param, "this model has no tokenizer.json: send token ids")
	}
	if err := checkBytes(param, len(text), limit); err != nil {
		return nil, err
	}
	select {
	case s.tokenizing <- struct{}{}:
		defer func() { <-s.tokenizing }()
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	var ids []int32
	var err error
	if le, ok := s.cfg.Tokenizer.(limitEncoder); ok {
		ids, err = le.EncodeLimit(text, addSpecial, limit)
	} else {
		ids, err = s.cfg.Tokenizer.Encode(text, addSpecial)
	}
	switch {
	case errors.Is(err, tokenizer.ErrTooManyTokens), err == nil && len(ids) > limit:
		return nil, badRequest(param, "%s has more than %d tokens: this model's maximum context length is %d tokens", param, limit, limit)
	case err != nil:
		return nil, badRequest(param, "tokenizing the %s: %v", param, err)
	}
	return ids, nil
}

// promptLimit is the most tokens a generation prompt may have: the
// context, which must also hold at least one generated token.
func (s *Server) promptLimit() int { return s.cfg.Scheduler.Config().MaxContext }

// checkBytes refuses text parts whose total length alone cannot fit
// limit tokens, before they are rendered into a prompt.
func checkBytes(param string, n, limit int) error {
	if n > limit*maxBytesPerToken {
		return badRequest(param, "%s of %d bytes cannot fit this model's maximum context length of %d tokens", param, n, limit)
	}
	return nil
}
