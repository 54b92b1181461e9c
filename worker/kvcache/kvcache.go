// Package kvcache holds a worker's paged key/value memory: per layer, one
// pool of fixed-size blocks for keys and one for values. Block numbers come
// from a shard/kvblocks Allocator (the coordinator's, in a cluster), so the
// tables are small plain values while the memory stays in the worker.
package kvcache

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/kvblocks"
)

// ErrOutOfBlocks means the pool cannot hold the tokens asked for.
var ErrOutOfBlocks = kvblocks.ErrOutOfBlocks

// Seq is one sequence's view of the cache.
type Seq = kvblocks.Seq

// Cache is the physical K/V memory for a set of layers, with its own
// allocator for single-process use.
type Cache struct {
	*kvblocks.Allocator
	// K and V hold one pool per layer, shaped [blocks, BlockSize, KVHeads, HeadDim].
	K, V []kernels.Tensor
}

// New allocates layers × 2 pools of blocks blocks each.
func New(b kernels.Backend, layers, kvHeads, headDim, blockSize, blocks int) (*Cache, error) {
	if layers <= 0 || kvHeads <= 0 || headDim <= 0 || blockSize <= 0 || blocks <= 0 {
		return nil, fmt.Errorf("kv cache: invalid geometry: %d layers, %d kv heads, head dim %d, %d blocks of %d",
			layers, kvHeads, headDim, blocks, blockSize)
	}
	c := NewTables(blockSize, blocks)
	c.K, c.V = make([]kernels.Tensor, layers), make([]kernels.Tensor, layers)
	for l := range layers {
		c.K[l] = b.Alloc(blocks, blockSize, kvHeads, headDim)
		c.V[l] = b.Alloc(blocks, blockSize, kvHeads, headDim)
	}
	return c, nil
}

// NewTables is a cache without memory: it only hands out block numbers.
func NewTables(blockSize, n int) *Cache {
	return &Cache{Allocator: kvblocks.New(blockSize, n)}
}
