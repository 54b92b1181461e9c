package model

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/weights"
)

// ErrConfig reports a config.json whose sizes the checkpoint contradicts.
var ErrConfig = errors.New("config.json does not match the checkpoint")

// checkSizes holds the config's sizes to the checkpoint's tensor index
// before a constructor allocates anything in proportion to them: a
// config that asks for 10⁸ layers must fail here, not in an allocation.
//
// For a card with tensors the check is exact: the layers the checkpoint
// holds are exactly [0, Layers), and every tensor the card names has the
// shape the config implies. For any card, each layer count is at most the
// number of tensors and each width at most the largest dimension of any
// tensor, since every one of them is the size of some tensor.
func checkSizes(s *spec.Spec, card *spec.Card, ckpt *weights.Checkpoint) error {
	names := ckpt.Names()
	largest := 0
	for _, n := range names {
		info, _ := ckpt.Info(n)
		for _, d := range info.Shape {
			largest = max(largest, d)
		}
	}
	counts := []size{{"layer count", s.Layers}}
	for _, k := range sortedKeys(s.Extra) {
		if strings.HasSuffix(k, "_layers") {
			counts = append(counts, size{k, int(s.Extra[k])})
		}
	}
	for _, c := range counts {
		if c.n > len(names) {
			return fmt.Errorf("%w: %s %d, but the checkpoint holds only %d tensors", ErrConfig, c.what, c.n, len(names))
		}
	}
	widths := []size{{"hidden size", s.Hidden}, {"intermediate size", s.Intermediate}, {"vocab size", s.Vocab},
		{"heads × head dim", s.Heads * s.HeadDim}, {"kv heads × head dim", s.KVHeads * s.HeadDim}}
	for _, w := range widths {
		if w.n > largest {
			return fmt.Errorf("%w: %s %d is larger than any checkpoint tensor (largest dimension %d)", ErrConfig, w.what, w.n, largest)
		}
	}
	if !card.Shardable() {
		return nil
	}
	layers := 0
	for _, n := range names {
		rule, layer, ok := spec.Lookup(card.Tensors, n)
		if !ok {
			continue
		}
		layers = max(layers, layer+1)
		info, _ := ckpt.Info(n)
		if want := plan.Shape(rule, s); !slices.Equal(info.Shape, want) {
			// Either file may be the wrong one: the error is both.
			return fmt.Errorf("%w: %w: %s has shape %v, the config implies %v", ErrConfig, ErrWeights, n, info.Shape, want)
		}
	}
	if layers != s.Layers {
		return fmt.Errorf("%w: layer count %d, but the checkpoint's tensors hold %d layers", ErrConfig, s.Layers, layers)
	}
	return nil
}

// size is a config number and what it counts.
type size struct {
	what string
	n    int
}

func sortedKeys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
