package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// commonRequest holds the fields completions and chat share.
type commonRequest struct {
	Model     string `json:"model"`
	MaxTokens *int   `json:"max_tokens"`
	MinTokens *int   `json:"min_tokens"`
	samplingFields
	N                *int               `json:"n"`
	Stop             json.RawMessage    `json:"stop"`
	StopTokenIDs     []int32            `json:"stop_token_ids"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	BestOf           *int               `json:"best_of"`
	Stream           bool               `json:"stream"`
	StreamOptions    *streamOptions     `json:"stream_options"`
	IgnoreEOS        bool               `json:"ignore_eos"`
	ReturnTokenIDs   bool               `json:"return_token_ids"`
	SelfConsistency  *selfConsistency   `json:"self_consistency"`
	User             string             `json:"user"`
	guidedFields
}

func (c *commonRequest) params() (*params, error) {
	stops, stopIDs, err := stopField(c.Stop)
	if err != nil {
		return nil, err
	}
	bias, err := logitBiasField(c.LogitBias)
	if err != nil {
		return nil, err
	}
	gd, err := c.guided()
	if err != nil {
		return nil, err
	}
	return &params{MaxTokens: c.MaxTokens, MinTokens: c.MinTokens, Temperature: c.Temperature, TopP: c.TopP, TopK: c.TopK,
		MinP: c.MinP, N: c.N, BestOf: c.BestOf, Seed: c.Seed, Stop: stops, StopIDs: append(stopIDs, c.StopTokenIDs...), LogitBias: bias,
		PresencePenalty: c.PresencePenalty, FrequencyPenalty: c.FrequencyPenalty, RepetitionPenalty: c.RepetitionPenalty,
		IgnoreEOS: c.IgnoreEOS, ReturnTokenIDs: c.ReturnTokenIDs, Stream: c.Stream, Consistency: c.SelfConsistency, Guided: gd}, nil
}

// samplingFields are the sampling fields every generation endpoint
// (completions, chat, responses) takes.
type samplingFields struct {
	Temperature       *float64 `json:"temperature"`
	TopP              *float64 `json:"top_p"`
	TopK              *int     `json:"top_k"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	Seed              *int64   `json:"seed"`
}

// completionRequest is OpenAI's completion request with vLLM's sampling
// extensions.
type completionRequest struct {
	commonRequest
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func (c *completionRequest) params() (*params, error) {
	p, err := c.commonRequest.params()
	if err != nil {
		return nil, err
	}
	p.Logprobs, p.Echo = c.Logprobs, c.Echo
	return p, nil
}

// parseCompletion decodes and validates a completion request body.
func (s *Server) parseCompletion(ctx context.Context, body []byte) (*completionRequest, *genRequest, []string, error) {
	var req completionRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, nil, nil, err
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, nil, nil, err
	}
	p, err := req.params()
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := s.generator(); err != nil {
		return nil, nil, nil, err
	}
	prompts, texts, err := s.prompts(ctx, req.Prompt, s.promptLimit(), "prompt")
	if err != nil {
		return nil, nil, nil, err
	}
	g, err := s.build(p, prompts, 16, maxLogprobs, "logprobs")
	if err != nil {
		return nil, nil, nil, err
	}
	if texts == nil && (req.Echo || g.logprobs >= 0) {
		texts = make([]string, len(prompts))
		for i, pr := range prompts {
			texts[i] = s.text(pr)
		}
	}
	return &req, g, texts, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, g, promptTexts, err := s.parseCompletion(r.Context(), body)
	if err != nil {
		writeError(w, err)
		return
	}
	id := newID("cmpl-")
	if g.stream {
		s.streamCompletion(w, r, req, g, promptTexts, id)
		return
	}
	s.respond(w, r, g, id, "text_completion", func(i int, q *sequence) map[string]any {
		text := q.text
		var echoIDs []int32
		if g.echo {
			text, echoIDs = promptTexts[q.prompt]+text, g.prompts[q.prompt]
		}
		c := map[string]any{"index": i, "text": text, "finish_reason": q.finish, "logprobs": nil}
		if g.logprobs >= 0 {
			c["logprobs"] = s.completionLogprobs(echoIDs, q.tokens, 0)
		}
		if g.returnTokenIDs {
			c["token_ids"] = tokenIDs(q.tokens)
			c["prompt_token_ids"] = g.prompts[q.prompt]
		}
		return c
	})
}

// streamCompletion sends text_completion chunks as tokens arrive.
func (s *Server) streamCompletion(w http.ResponseWriter, r *http.Request, req *completionRequest, g *genRequest, promptTexts []string, id string) {
	var first func(int) map[string]any
	if g.echo {
		first = func(k int) map[string]any {
			return map[string]any{"index": k, "text": promptTexts[k/g.bestOf], "logprobs": nil, "finish_reason": nil}
		}
	}
	offsets := make([]int, len(g.prompts)*g.bestOf)
	s.streamSequences(w, r, g, "text_completion", id, req.StreamOptions, first, func(d delta) map[string]any {
		c := map[string]any{"index": d.seq, "text": d.text, "logprobs": nil, "finish_reason": nil}
		if g.logprobs >= 0 {
			c["logprobs"] = s.completionLogprobs(nil, d.tokens, offsets[d.seq])
			offsets[d.seq] += len(d.text)
		}
		if g.returnTokenIDs {
			c["token_ids"] = tokenIDs(d.tokens)
		}
		return c
	})
}

// completionLogprobs is OpenAI's completions logprobs object for echoed
// prompt ids (whose logprobs are null: prompts are not scored) and
// generated tokens; offset is the text offset of the first.
func (s *Server) completionLogprobs(echo []int32, toks []scheduler.Token, offset int) map[string]any {
	n := len(echo) + len(toks)
	strs := make([]string, 0, n)
	lps := make([]*float64, 0, n)
	tops := make([]map[string]float64, 0, n)
	offs := make([]int, 0, n)
	add := func(id int32, lp *float64, top map[string]float64) {
		t := s.tokenText(id)
		strs, lps, tops, offs = append(strs, t), append(lps, lp), append(tops, top), append(offs, offset)
		offset += len(t)
	}
	for _, id := range echo {
		add(id, nil, nil)
	}
	for _, t := range toks {
		lp := t.Logprob
		top := map[string]float64{s.tokenText(t.ID): t.Logprob}
		for _, c := range t.Top {
			if _, dup := top[s.tokenText(c.ID)]; !dup {
				top[s.tokenText(c.ID)] = c.Logprob
			}
		}
		add(t.ID, &lp, top)
	}
	return map[string]any{"tokens": strs, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offs}
}

func (s *Server) text(ids []int32) string {
	if s.cfg.Tokenizer == nil {
		return ""
	}
	t, err := s.cfg.Tokenizer.Decode(ids)
	if err != nil {
		return ""
	}
	return t
}

func (s *Server) tokenText(id int32) string { return s.text([]int32{id}) }

func tokenIDs(toks []scheduler.Token) []int32 {
	ids := make([]int32, len(toks))
	for i, t := range toks {
		ids[i] = t.ID
	}
	return ids
}
