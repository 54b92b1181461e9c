// Package modelbench times a loaded causal LM the way a server drives it:
// batched decode, many sequences advancing one token each in one forward
// pass. `tessera bench-model --batch` reports it next to single-sequence
// prompt and decode figures (docs/benchmarks.md).
package modelbench
