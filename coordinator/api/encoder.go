package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
)

// Encoder runs an encoder model (BERT) for /v1/embeddings and
// /v1/fill-mask. The coordinator does not run models; cmd/tessera wires
// one that does.
type Encoder interface {
	// Embed returns the mean-pooled last hidden state of ids.
	Embed(ctx context.Context, ids []int32) ([]float32, error)
	// MaskedLogits returns the masked-LM logits at positions of ids.
	MaskedLogits(ctx context.Context, ids []int32, positions []int) ([][]float32, error)
	// MaskID is the [MASK] token; MaxTokens the longest input.
	MaskID() int32
	MaxTokens() int
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

// inputs decodes "input" like a completion prompt: text(s) or token ids.
func (s *Server) inputs(ctx context.Context, raw json.RawMessage) ([][]int32, []string, error) {
	limit := s.cfg.Encoder.MaxTokens()
	ids, texts, err := s.prompts(ctx, raw, limit, "input")
	if err != nil {
		return nil, nil, err
	}
	for i, in := range ids {
		if len(in) == 0 {
			return nil, nil, badRequest("input", "input %d is empty", i)
		}
		if len(in) > limit {
			return nil, nil, badRequest("input", "input %d has %d tokens; this model's maximum is %d", i, len(in), limit)
		}
	}
	return ids, texts, nil
}

func (s *Server) encoderRequest(w http.ResponseWriter, r *http.Request, v any, model func() string) bool {
	if err := s.decodeBody(w, r, v); err != nil {
		writeError(w, err)
		return false
	}
	if err := s.checkModel(model()); err != nil {
		writeError(w, err)
		return false
	}
	if s.cfg.Encoder == nil {
		writeError(w, badRequest("model", "model %q is not an encoder: /v1/embeddings and /v1/fill-mask need one (bert)", s.cfg.Model))
		return false
	}
	return true
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if !s.encoderRequest(w, r, &req, func() string { return req.Model }) {
		return
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, badRequest("encoding_format", "encoding_format must be float or base64, got %q", req.EncodingFormat))
		return
	}
	inputs, _, err := s.inputs(r.Context(), req.Input)
	if err != nil {
		writeError(w, err)
		return
	}
	data := make([]any, len(inputs))
	tokens := 0
	for i, ids := range inputs {
		tokens += len(ids)
		vec, err := s.cfg.Encoder.Embed(r.Context(), ids)
		if err != nil {
			writeError(w, err)
			return
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(v))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": s.cfg.Model,
		"usage": map[string]int{"prompt_tokens": tokens, "total_tokens": tokens}})
}

type fillMaskRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
	TopK  *int            `json:"top_k"`
}

// fillMask answers, per input and per [MASK] position, the top_k tokens
// with their probabilities (softmax over the vocabulary) and the input
// with that token filled in, as Hugging Face's fill-mask pipeline does.
func (s *Server) fillMask(w http.ResponseWriter, r *http.Request) {
	var req fillMaskRequest
	if !s.encoderRequest(w, r, &req, func() string { return req.Model }) {
		return
	}
	top := 5
	if req.TopK != nil {
		if *req.TopK < 1 || *req.TopK > 100 {
			writeError(w, badRequest("top_k", "top_k must be in [1, 100], got %d", *req.TopK))
			return
		}
		top = *req.TopK
	}
	inputs, _, err := s.inputs(r.Context(), req.Input)
	if err != nil {
		writeError(w, err)
		return
	}
	mask := s.cfg.Encoder.MaskID()
	data := make([]any, len(inputs))
	for i, ids := range inputs {
		var positions []int
		for p, id := range ids {
			if id == mask {
				positions = append(positions, p)
			}
		}
		if len(positions) == 0 {
			writeError(w, badRequest("input", "input %d has no [MASK] token (id %d)", i, mask))
			return
		}
		rows, err := s.cfg.Encoder.MaskedLogits(r.Context(), ids, positions)
		if err != nil {
			writeError(w, err)
			return
		}
		masks := make([]any, len(positions))
		for m, p := range positions {
			cands := topProbs(rows[m], top)
			list := make([]any, len(cands))
			for c, cd := range cands {
				filled := slices.Clone(ids)
				filled[p] = cd.id
				list[c] = map[string]any{"token": cd.id, "token_str": strings.TrimSpace(s.tokenText(cd.id)), "score": cd.p,
					"sequence": s.text(filled)}
			}
			masks[m] = map[string]any{"position": p, "candidates": list}
		}
		data[i] = map[string]any{"index": i, "masks": masks}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "model": s.cfg.Model, "data": data})
}

type prob struct {
	id int32
	p  float64
}

// topProbs is the k most probable tokens under softmax(logits), best
// first, ties to the lower id.
func topProbs(logits []float32, k int) []prob {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	ps := make([]prob, len(logits))
	for i, v := range logits {
		ps[i] = prob{int32(i), math.Exp(float64(v)-mx) / sum}
	}
	slices.SortStableFunc(ps, func(a, b prob) int {
		switch {
		case a.p > b.p:
			return -1
		case a.p < b.p:
			return 1
		}
		return 0
	})
	return ps[:min(k, len(ps))]
}
