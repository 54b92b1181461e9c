package weights_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/tessera-llm/tessera/worker/weights"
)

func Example() {
	dir, err := os.MkdirTemp("", "weights-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A 3x4 BF16 matrix holding 0..11.
	vals := make([]float32, 12)
	for i := range vals {
		vals[i] = float32(i)
	}
	data, err := weights.EncodeFloat32(weights.BF16, vals)
	if err != nil {
		log.Fatal(err)
	}
	err = weights.Write(filepath.Join(dir, "model.safetensors"), []weights.WriteTensor{
		{Name: "w", DType: weights.BF16, Shape: []int{3, 4}, Data: data},
	}, map[string]string{"format": "pt"})
	if err != nil {
		log.Fatal(err)
	}

	ck, err := weights.Open(dir) // finds dir/model.safetensors
	if err != nil {
		log.Fatal(err)
	}
	defer ck.Close()

	info, _ := ck.Info("w")
	fmt.Println(ck.Names(), info.DType, info.Shape, ck.Metadata()["format"])

	row, _ := ck.Rows("w", 1, 2) // zero-copy bytes of row 1
	r, _ := weights.DecodeFloat32(info.DType, row)
	fmt.Println("row 1:", r)

	col, _ := ck.Cols("w", 2, 4) // columns 2..3 of every row, copied
	cc, _ := weights.DecodeFloat32(info.DType, col)
	fmt.Println("cols 2-3:", cc)
	// Output:
	// [w] BF16 [3 4] pt
	// row 1: [4 5 6 7]
	// cols 2-3: [2 3 6 7 10 11]
}
