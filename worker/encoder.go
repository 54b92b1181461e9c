package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tessera-llm/tessera/worker/model"
)

// ErrNoMaskToken: a model's tokenizer.json is missing or has no [MASK].
var ErrNoMaskToken = errors.New("no [MASK] token")

// Encoder runs an encoder model (BERT) in this process, one request at a
// time. It is the engine a coordinator serves /v1/embeddings and
// /v1/fill-mask with: an encoder is small, does not shard, and answers in
// one forward pass, so it needs no placement on workers.
type Encoder struct {
	mu     sync.Mutex
	enc    model.Encoder
	maskID int32
	max    int
}

// LoadEncoder loads the encoder model in dir. A model without a [MASK]
// token still serves embeddings.
func LoadEncoder(dir string) (*Encoder, error) {
	m, err := model.Load(dir)
	if err != nil {
		return nil, err
	}
	enc, ok := m.(model.Encoder)
	if !ok {
		return nil, fmt.Errorf("%s is not an encoder", m.Spec().Arch)
	}
	maskID, err := MaskTokenID(dir)
	if err != nil && !errors.Is(err, ErrNoMaskToken) {
		return nil, err
	}
	e := &Encoder{enc: enc, maskID: int32(maskID), max: m.Spec().MaxPositions}
	if e.max <= 0 {
		e.max = 512
	}
	return e, nil
}

// Embed is the mean-pooled last hidden state of ids.
func (e *Encoder) Embed(ctx context.Context, ids []int32) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out, err := e.enc.Encode(ctx, model.EncoderInput{IDs: ids})
	if err != nil {
		return nil, err
	}
	return out.Mean(), nil
}

// MaskedLogits are the masked-LM logits at positions of ids.
func (e *Encoder) MaskedLogits(ctx context.Context, ids []int32, positions []int) ([][]float32, error) {
	mlm, ok := e.enc.(model.MaskedLM)
	if !ok {
		return nil, fmt.Errorf("%s has no masked-LM head", e.enc.Spec().Arch)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return mlm.MaskedLogits(ctx, model.EncoderInput{IDs: ids}, positions)
}

// MaskID is the [MASK] token id (0 when the model has none).
func (e *Encoder) MaskID() int32 { return e.maskID }

// MaxTokens is the longest input.
func (e *Encoder) MaxTokens() int { return e.max }

// MaskTokenID finds "[MASK]" among the added tokens or the vocabulary of
// the model's tokenizer.json; the error wraps ErrNoMaskToken when there
// is none to find.
func MaskTokenID(dir string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return 0, fmt.Errorf("%w: no tokenizer.json to find [MASK] in: %v", ErrNoMaskToken, err)
	}
	var tok struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		Model struct {
			Vocab json.RawMessage `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return 0, fmt.Errorf("%s/tokenizer.json: %v", dir, err)
	}
	for _, t := range tok.AddedTokens {
		if t.Content == "[MASK]" {
			return t.ID, nil
		}
	}
	var vocab map[string]int
	if json.Unmarshal(tok.Model.Vocab, &vocab) == nil {
		if id, ok := vocab["[MASK]"]; ok {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: %s/tokenizer.json has none", ErrNoMaskToken, dir)
}
