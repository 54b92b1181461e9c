package tokenizer

import (
	"encoding/json"
	"os"
	"testing"
)

const docbloomDir = "../../models/docbloom-3m"

// TestDocbloom checks the bundled model's tokenizer against its golden.json:
// each prompt encodes to prompt_ids and greedy_ids decode to greedy_text.
func TestDocbloom(t *testing.T) {
	tk, err := Load(docbloomDir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(docbloomDir + "/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			Prompt     string  `json:"prompt"`
			PromptIDs  []int32 `json:"prompt_ids"`
			GreedyIDs  []int32 `json:"greedy_ids"`
			GreedyText string  `json:"greedy_text"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("no cases in golden.json")
	}
	for _, c := range g.Cases {
		t.Run(c.Prompt, func(t *testing.T) {
			enc, err := tk.Encode(c.Prompt, false)
			if err != nil {
				t.Fatal(err)
			}
			if !eqSlice(enc.IDs, c.PromptIDs) {
				t.Errorf("Encode(%q) = %v, want %v", c.Prompt, enc.IDs, c.PromptIDs)
			}
			text, err := tk.Decode(c.GreedyIDs, false)
			if err != nil {
				t.Fatal(err)
			}
			if text != c.GreedyText {
				t.Errorf("Decode(greedy_ids) = %q, want %q", text, c.GreedyText)
			}
			full, err := tk.Decode(append(append([]int32{}, c.PromptIDs...), c.GreedyIDs...), false)
			if err != nil {
				t.Fatal(err)
			}
			if full != c.Prompt+c.GreedyText {
				t.Errorf("Decode(prompt+greedy) = %q, want %q", full, c.Prompt+c.GreedyText)
			}
		})
	}
}
