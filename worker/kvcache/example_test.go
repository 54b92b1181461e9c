package kvcache_test

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/kvcache"
)

func Example() {
	// Two layers, one kv head of 8 dims, 4 blocks of 16 tokens.
	c, _ := kvcache.New(cpu.New(), 2, 1, 8, 16, 4)
	var seq kvcache.Seq
	_ = c.Reserve(&seq, 20) // a 20-token prompt needs two blocks
	seq.Len = 20
	fmt.Println(len(seq.Table), "blocks used,", c.FreeBlocks(), "free")
	c.Release(&seq)
	fmt.Println(c.FreeBlocks(), "free after release")
	// Output:
	// 2 blocks used, 2 free
	// 4 free after release
}
