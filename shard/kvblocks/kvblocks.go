// Package kvblocks allocates paged KV-cache blocks. The coordinator keeps
// every sequence's block table with an Allocator; each worker's pools
// have as many blocks and store a sequence's tokens at the numbers of its
// table, so tables travel in steps and memory never moves.
//
// With a sliding attention window (Mistral) a sequence gives back the
// blocks its window has passed (Slide), so it holds about a window of
// tokens however long it grows.
//
// Full blocks can be shared through the prefix cache: a full block is
// keyed by a hash of every token up to its end, so two sequences with the
// same prefix map it to the same block. A shared block is full, so no
// sequence writes it again: sharing needs no copy. Blocks nobody holds
// stay cached until their space is needed.
package kvblocks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
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
	// Hashes are the prefix-cache keys of the sequence's full blocks.
	Hashes []uint64
	// Dropped counts the leading blocks of Table that Slide gave back: no
	// later query of the sequence reaches them. Their numbers stay in Table,
	// which the workers index by token position, but they are not read.
	Dropped int
}

// Allocator hands out block numbers of a pool of fixed-size blocks.
type Allocator struct {
	BlockSize int
	blocks    int
	free      []int32 // unused and uncached
	ref       []int32 // holders per block
	key       []uint64
	cached    map[uint64]int32
	evictable []int32 // cached, held by nobody; oldest first (lazily cleaned)
	idle      int     // cached blocks held by nobody
}

// New is an allocator of blocks blocks of blockSize tokens.
func New(blockSize, blocks int) *Allocator {
	blocks = max(blocks, 0)
	a := &Allocator{BlockSize: max(blockSize, 1), blocks: blocks, free: make([]int32, blocks),
		ref: make([]int32, blocks), key: make([]uint64, blocks), cached: map[uint64]int32{}}
	for i := range a.free {
		// Hand out low block numbers first: easier to read in a debugger.
		a.free[i] = int32(blocks - 1 - i)
	}
	return a
}

// FreeBlocks is the number of blocks a Reserve can take: unused ones and
// cached ones nobody holds.
func (a *Allocator) FreeBlocks() int { return len(a.free) + a.idle }

// Blocks is the pool size in blocks.
func (a *Allocator) Blocks() int { return a.blocks }

// Capacity is the number of tokens the whole pool holds.
func (a *Allocator) Capacity() int { return a.blocks * a.BlockSize }

// Need is how many more blocks seq needs to grow by n tokens.
func (a *Allocator) Need(seq *Seq, n int) int {
	return max((seq.Len+n+a.BlockSize-1)/a.BlockSize-len(seq.Table), 0)
}

// Reserve makes room for n more tokens of seq, taking blocks as needed
// (evicting cached blocks nobody holds, oldest first). On failure seq is
// unchanged.
func (a *Allocator) Reserve(seq *Seq, n int) error {
	need := a.Need(seq, n)
	if need == 0 {
		return nil
	}
	if need > a.FreeBlocks() {
		return fmt.Errorf("%w: %d more tokens need %d blocks, %d free of %d (%d tokens each)",
			ErrOutOfBlocks, n, need, a.FreeBlocks(), a.blocks, a.BlockSize)
	}
	for range need {
		b := a.take()
		a.ref[b] = 1
		seq.Table = append(seq.Table, b)
	}
	return nil
}

func (a *Allocator) take() int32 {
	if n := len(a.free); n > 0 {
		b := a.free[n-1]
		a.free = a.free[:n-1]
		return b
	}
	for {
		b := a.evictable[0]
		a.evictable = a.evictable[1:]
		if a.ref[b] != 0 || a.key[b] == 0 {
			continue // revived or already evicted: a stale entry
		}
		delete(a.cached, a.key[b])
		a.key[b] = 0
		a.idle--
		return b
	}
}

// Release drops seq's hold on its blocks and empties it. Blocks in the
// prefix cache stay there until evicted.
func (a *Allocator) Release(seq *Seq) {
	for i := len(seq.Table) - 1; i >= seq.Dropped; i-- {
		a.unref(seq.Table[i])
	}
	seq.Table, seq.Hashes = seq.Table[:0], seq.Hashes[:0]
	seq.Len, seq.PrefixLen, seq.Dropped = 0, 0, 0
}

// Slide gives back the leading blocks of seq that a sliding attention
// window of window tokens (Mistral's) has left behind: the next query, at
// position seq.Len, sees keys from seq.Len+1-window on, and later ones
// less. So a sequence holds about window tokens of blocks however long it
// grows. Blocks in the prefix cache stay there until evicted.
func (a *Allocator) Slide(seq *Seq, window int) {
	if window <= 0 {
		return
	}
	for dead := min(max(seq.Len+1-window, 0)/a.BlockSize, len(seq.Table)); seq.Dropped < dead; seq.Dropped++ {
		a.unref(seq.Table[seq.Dropped])
	}
}

// unref drops one hold on block b; with none left it becomes free, or
// evictable when the prefix cache keeps it.
func (a *Allocator) unref(b int32) {
	if a.ref[b]--; a.ref[b] > 0 {
		return
	}
	if a.key[b] != 0 {
		a.evictable = append(a.evictable, b)
		a.idle++
	} else {
		a.free = append(a.free, b)
	}
}

// chain is the prefix-cache key of a full block: the key of the block
// before it extended by the block's tokens.
func chain(prev uint64, tokens []int32) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], prev)
	h.Write(b[:])
	for _, t := range tokens {
		binary.LittleEndian.PutUint32(b[:4], uint32(t))
		h.Write(b[:4])
	}
	return max(h.Sum64(), 1) // 0 means "not cached"
}

// Match makes an empty seq hold the cached blocks of the longest cached
// prefix of tokens, up to limit tokens, and sets seq.Len to the tokens
// they cover. It returns that count.
func (a *Allocator) Match(seq *Seq, tokens []int32, limit int) int {
	var prev uint64
	bs := a.BlockSize
	for end := bs; end <= min(len(tokens), limit); end += bs {
		k := chain(prev, tokens[end-bs:end])
		b, ok := a.cached[k]
		if !ok {
			break
		}
		if a.ref[b] == 0 {
			a.idle--
		}
		a.ref[b]++
		seq.Table = append(seq.Table, b)
		seq.Hashes = append(seq.Hashes, k)
		prev = k
	}
	seq.Len = len(seq.Table) * bs
	return seq.Len
}

// Commit records seq's newly full blocks in the prefix cache; tokens are
// all of seq's tokens so far (at least seq.Len).
func (a *Allocator) Commit(seq *Seq, tokens []int32) {
	bs := a.BlockSize
	for i := len(seq.Hashes); (i+1)*bs <= seq.Len && i < len(seq.Table); i++ {
		var prev uint64
		if i > 0 {
			prev = seq.Hashes[i-1]
		}
		k := chain(prev, tokens[i*bs:(i+1)*bs])
		seq.Hashes = append(seq.Hashes, k)
		b := seq.Table[i]
		if _, dup := a.cached[k]; dup || a.key[b] != 0 {
			continue // another block already holds this prefix
		}
		a.cached[k], a.key[b] = b, k
	}
}

// Forget empties the prefix cache (after the workers lost their KV).
func (a *Allocator) Forget() {
	for k, b := range a.cached {
		if a.ref[b] == 0 {
			a.idle--
			a.free = append(a.free, b)
		}
		a.key[b] = 0
		delete(a.cached, k)
	}
	a.evictable = a.evictable[:0]
}

// Cached is the number of blocks in the prefix cache.
func (a *Allocator) Cached() int { return len(a.cached) }
