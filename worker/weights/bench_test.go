package weights

import (
	"path/filepath"
	"testing"
)

// benchCheckpoint writes a docbloom-sized 4096x192 BF16 embedding.
func benchCheckpoint(b *testing.B) (*Checkpoint, TensorInfo) {
	b.Helper()
	const rows, cols = 4096, 192
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	err := Write(path, []WriteTensor{{Name: "emb", DType: BF16, Shape: []int{rows, cols}, Data: mustEncode(b, BF16, seq(rows*cols))}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	info, _ := c.Info("emb")
	return c, info
}

func BenchmarkFloat32BF16(b *testing.B) {
	c, info := benchCheckpoint(b)
	b.SetBytes(info.Size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Float32("emb"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColsBF16 takes a quarter of the columns, as a 4-way
// tensor-parallel worker would.
func BenchmarkColsBF16(b *testing.B) {
	c, info := benchCheckpoint(b)
	b.SetBytes(info.Size / 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Cols("emb", 48, 96); err != nil {
			b.Fatal(err)
		}
	}
}
