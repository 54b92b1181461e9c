// Package kvcache holds a worker's paged key/value memory: per layer, one
// pool of fixed-size blocks for keys and one for values. A sequence owns a
// block table (its blocks in order) and a length; tokens are appended at
// the end. Block tables are small plain values, so the coordinator can own
// them while the worker owns the physical blocks.
package kvcache

import (
	"errors"
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
)

// ErrOutOfBlocks means the pool cannot hold the tokens asked for.
var ErrOutOfBlocks = errors.New("kv cache: out of blocks")

// Seq is one sequence's view of the cache.
type Seq struct {
	// Table lists the sequence's blocks in order.
	Table []int32
	// Len is the number of tokens already stored.
	Len int
	// PrefixLen is the length of a bidirectional prefix (ChatGLM); 0 for none.
	PrefixLen int
}

// Cache is the physical K/V memory for a set of layers.
type Cache struct {
	BlockSize int
	// K and V hold one pool per layer, shaped [blocks, BlockSize, KVHeads, HeadDim].
	K, V   []kernels.Tensor
	free   []int32
	blocks int
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
// A coordinator keeps sequences' block tables with one, and every worker
// whose pools have as many blocks stores the tokens at those numbers.
func NewTables(blockSize, blocks int) *Cache {
	c := &Cache{BlockSize: max(blockSize, 1), blocks: max(blocks, 0), free: make([]int32, max(blocks, 0))}
	for i := range c.free {
		// Hand out low block numbers first: easier to read in a debugger.
		c.free[i] = int32(blocks - 1 - i)
	}
	return c
}

// FreeBlocks is the number of unused blocks.
func (c *Cache) FreeBlocks() int { return len(c.free) }

// Capacity is the number of tokens the whole pool holds.
func (c *Cache) Capacity() int { return c.Blocks() * c.BlockSize }

// Blocks is the pool size in blocks.
func (c *Cache) Blocks() int { return c.blocks }

// Reserve makes room for n more tokens of seq, taking blocks as needed.
// On failure seq is unchanged.
func (c *Cache) Reserve(seq *Seq, n int) error {
	need := (seq.Len+n+c.BlockSize-1)/c.BlockSize - len(seq.Table)
	if need <= 0 {
		return nil
	}
	if need > len(c.free) {
		return fmt.Errorf("%w: %d more tokens need %d blocks, %d free of %d (%d tokens each)",
			ErrOutOfBlocks, n, need, len(c.free), c.Blocks(), c.BlockSize)
	}
	take := c.free[len(c.free)-need:]
	for i := len(take) - 1; i >= 0; i-- {
		seq.Table = append(seq.Table, take[i])
	}
	c.free = c.free[:len(c.free)-need]
	return nil
}

// Release returns seq's blocks to the pool and empties it.
func (c *Cache) Release(seq *Seq) {
	for i := len(seq.Table) - 1; i >= 0; i-- {
		c.free = append(c.free, seq.Table[i])
	}
	seq.Table = seq.Table[:0]
	seq.Len = 0
	seq.PrefixLen = 0
}
