// Package plan places a model on workers: pipeline stages of consecutive
// layers, each split over tensor-parallel ranks by attention heads, MLP
// columns and vocabulary rows, in proportion to each worker's advertised
// memory.
//
// A Plan is a plain, versioned value: String prints it, Hash identifies
// its content, it round-trips through JSON, and Validate checks that it
// covers the model exactly once. Each rank carries everything a worker
// needs to load and run its shard: its ranges, the kv heads its query heads
// read (replicated when ranks outnumber kv heads) with the local
// query → kv map, and for ALiBi models its slice of the global slopes.
//
// Rules(arch) reads from the architecture's card (shard/spec) how each
// checkpoint tensor is sliced (column-parallel, fused per-head QKV,
// row-parallel with the bias on rank 0 only, vocab-parallel, replicated),
// and Rank.Slice turns a rule into the exact row and column ranges of the
// full tensor to read.
package plan
