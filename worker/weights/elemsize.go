package weights

import "fmt"

// ElementSize is the byte size of one element of the checkpoint's first
// tensor with a sized dtype: what the planner counts a weight as.
func ElementSize(path string) (int, error) {
	ck, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer ck.Close()
	for _, n := range ck.Names() {
		if info, _ := ck.Info(n); info.DType.Size() > 0 {
			return info.DType.Size(), nil
		}
	}
	return 0, fmt.Errorf("%s holds no tensors", path)
}
