package scheduler

import (
	"context"
	"regexp"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/sampling"
)

// Under a constraint, every sequence spells a match and stops by itself,
// greedy or sampled, whatever the model prefers.
func TestGuidedOutputMatches(t *testing.T) {
	// Token i spells one letter; the fake model's favourite tokens are
	// rarely the ones the pattern needs.
	letters := "abcdefghijklmnopqrstuvwxyz0123456789-"
	v := guide.NewVocab(vocab, func(id int32) ([]byte, bool) {
		return []byte{letters[int(id)%len(letters)]}, true
	}, nil)
	const pattern = `(cat|dog)s?-[0-9]{2}`
	m, err := guide.NewMatcher(guide.Spec{Kind: guide.Regex, Pattern: pattern}, v)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^(?:` + pattern + `)$`)
	s := start(t, Config{}, newFake(t))
	for i, p := range []sampling.Params{{}, {Temperature: 1, Seed: 3}, {Temperature: 2, TopK: 5, Seed: 9}} {
		h, err := s.Submit(context.Background(), Request{Prompt: []int32{int32(i + 1), 7, 9}, MaxTokens: 20, Sampling: p, Guide: m})
		if err != nil {
			t.Fatal(err)
		}
		var text []byte
		for tok := range h.Tokens() {
			text = append(text, letters[int(tok.ID)%len(letters)])
		}
		res := h.Wait()
		if res.Err != nil || res.Finish != "stop" {
			t.Fatalf("%+v: finish %q, err %v", p, res.Finish, res.Err)
		}
		if !re.Match(text) {
			t.Fatalf("%+v: generated %q, which does not match %s", p, text, pattern)
		}
	}
}
