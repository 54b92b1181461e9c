package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

func init() {
	register(command{name: "tokenize", summary: "Encode text with a Hugging Face tokenizer.json: ids, tokens and character offsets.", run: runTokenize})
	register(command{name: "detokenize", summary: "Decode comma-separated token ids to text with a Hugging Face tokenizer.json.", run: runDetokenize})
}

// defaultTokenizer is the bundled model's tokenizer.
var defaultTokenizer = filepath.Join(defaultModel, "tokenizer.json")

// loadTokenizer accepts a tokenizer.json or a model directory holding one.
func loadTokenizer(path string) (*tokenizer.Tokenizer, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	return tokenizer.Load(path)
}

func runTokenize(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", `tokenize [--tokenizer FILE] --text "..." [--add-special-tokens] [--json]`, stderr)
	path := fs.String("tokenizer", defaultTokenizer, "tokenizer.json, or a model directory that has one")
	text := fs.String("text", "", "the text to encode (required; may be empty)")
	addSpecial := fs.Bool("add-special-tokens", false, "apply the post-processor's template (e.g. <s>, [CLS] ... [SEP])")
	asJSON := fs.Bool("json", false, `print {"ids":[...],"tokens":[...],"offsets":[[a,b],...]}`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	textSet := false
	fs.Visit(func(f *flag.Flag) { textSet = textSet || f.Name == "text" })
	if !textSet {
		return fmt.Errorf("%w: --text is required", errUsage)
	}
	tk, err := loadTokenizer(*path)
	if err != nil {
		return err
	}
	enc, err := tk.Encode(*text, *addSpecial)
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			IDs     []int32  `json:"ids"`
			Tokens  []string `json:"tokens"`
			Offsets [][2]int `json:"offsets"`
		}{enc.IDs, enc.Tokens, enc.Offsets}
		if out.IDs == nil {
			out.IDs, out.Tokens, out.Offsets = []int32{}, []string{}, [][2]int{}
		}
		e := json.NewEncoder(stdout)
		e.SetEscapeHTML(false)
		return e.Encode(out)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "id\ttoken\tchars")
	for i, id := range enc.IDs {
		fmt.Fprintf(w, "%d\t%q\t[%d,%d)\n", id, enc.Tokens[i], enc.Offsets[i][0], enc.Offsets[i][1])
	}
	return w.Flush()
}

func runDetokenize(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("detokenize", "detokenize [--tokenizer FILE] --ids 1,2,3 [--skip-special-tokens]", stderr)
	path := fs.String("tokenizer", defaultTokenizer, "tokenizer.json, or a model directory that has one")
	idList := fs.String("ids", "", "comma-separated token ids (required)")
	skip := fs.Bool("skip-special-tokens", false, "drop special added tokens before decoding")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	ids, err := parseIDs(*idList)
	if err != nil {
		return err
	}
	if *idList == "" {
		return fmt.Errorf("%w: --ids is required", errUsage)
	}
	tk, err := loadTokenizer(*path)
	if err != nil {
		return err
	}
	text, err := tk.Decode(ids, *skip)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, text)
	return err
}
