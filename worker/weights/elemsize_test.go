package weights

import (
	"path/filepath"
	"testing"
)

func TestElementSize(t *testing.T) {
	for _, tc := range []struct {
		dt   DType
		want int
	}{{"F32", 4}, {"BF16", 2}, {"F16", 2}} {
		t.Run(string(tc.dt), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), SingleFileName)
			ts := []WriteTensor{{Name: "w", DType: tc.dt, Shape: []int{2, 2}, Data: mustEncode(t, tc.dt, seq(4))}}
			if err := Write(path, ts, nil); err != nil {
				t.Fatal(err)
			}
			if got, err := ElementSize(path); err != nil || got != tc.want {
				t.Errorf("ElementSize = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
	if _, err := ElementSize(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing checkpoint has an element size")
	}
}
