package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// pipelines are the tokenizer.json files of testdata/pipelines.
var pipelines = []string{"llama3", "qwen2", "mistral"}

// TestPipelines checks the Llama 3, Qwen2 and Mistral v0.3 pipelines
// (testdata/pipelines, see its README) against Hugging Face tokenizers on
// the golden strings and a few hundred random and adversarial ones: ids,
// tokens, offsets and both decodes. testdata/ref/gen.mjs regenerates the
// reference by hand; CI only reads it.
func TestPipelines(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "pipelines", "ref.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Tokenizers map[string]goldenSet `json:"tokenizers"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	for _, name := range pipelines {
		set, ok := ref.Tokenizers[name]
		if !ok || len(set.Cases) < 600 {
			t.Fatalf("ref.json has %d cases for %s, want the full set", len(set.Cases), name)
		}
		tk, err := Load(filepath.Join("testdata", "pipelines", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { checkCases(t, tk, set) })
	}
}
