// Package blocks allocates paged KV-cache blocks. The coordinator keeps
// every sequence's block table with an Allocator; each worker's pools
// have as many blocks and store a sequence's tokens at the numbers of its
// table, so tables travel in steps and memory never moves.
package blocks

import (
	"errors"
	"fmt"
)

// ErrOutOfBlocks means the pool cannot hold the tokens asked for.
var ErrOutOfBlocks = errors.New("kv cache: out of blocks")

// Seq is one sequence's place in the cache.
type Seq struct {
	// Table lists the sequence's blocks in order.
	Table []int32
	// Len is the number of tokens already stored.
	Len int
	// PrefixLen is the length of a bidirectional prefix (ChatGLM); 0 for none.
	PrefixLen int
}

// Allocator hands out block numbers of a pool of fixed-size blocks.
type Allocator struct {
	BlockSize int
	free      []int32
	blocks    int
}

// New is an allocator of blocks blocks of blockSize tokens.
func New(blockSize, blocks int) *Allocator {
	a := &Allocator{BlockSize: max(blockSize, 1), blocks: max(blocks, 0), free: make([]int32, max(blocks, 0))}
	for i := range a.free {
		// Hand out low block numbers first: easier to read in a debugger.
		a.free[i] = int32(blocks - 1 - i)
	}
	return a
}

// FreeBlocks is the number of unused blocks.
func (a *Allocator) FreeBlocks() int { return len(a.free) }

// Blocks is the pool size in blocks.
func (a *Allocator) Blocks() int { return a.blocks }

// Capacity is the number of tokens the whole pool holds.
func (a *Allocator) Capacity() int { return a.blocks * a.BlockSize }

// Need is how many more blocks seq needs to grow by n tokens.
func (a *Allocator) Need(seq *Seq, n int) int {
	return max((seq.Len+n+a.BlockSize-1)/a.BlockSize-len(seq.Table), 0)
}

// Reserve makes room for n more tokens of seq, taking blocks as needed.
// On failure seq is unchanged.
func (a *Allocator) Reserve(seq *Seq, n int) error {
	need := a.Need(seq, n)
	if need == 0 {
		return nil
	}
	if need > len(a.free) {
		return fmt.Errorf("%w: %d more tokens need %d blocks, %d free of %d (%d tokens each)",
			ErrOutOfBlocks, n, need, len(a.free), a.blocks, a.BlockSize)
	}
	take := a.free[len(a.free)-need:]
	for i := len(take) - 1; i >= 0; i-- {
		seq.Table = append(seq.Table, take[i])
	}
	a.free = a.free[:len(a.free)-need]
	return nil
}

// Release returns seq's blocks to the pool and empties it.
func (a *Allocator) Release(seq *Seq) {
	for i := len(seq.Table) - 1; i >= 0; i-- {
		a.free = append(a.free, seq.Table[i])
	}
	seq.Table = seq.Table[:0]
	seq.Len = 0
	seq.PrefixLen = 0
}
