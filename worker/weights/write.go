package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// WriteTensor is one tensor for Write. Data holds its little-endian
// elements, row-major; see EncodeFloat32 for float data.
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Write writes a safetensors file at path holding tensors, laid out in the
// order given, and metadata (may be nil). The header is padded with spaces
// to a multiple of 8 bytes so that the data section is 8-byte aligned. The
// file is written to a temporary name in the same directory and renamed
// into place, so readers never see a partial file.
func Write(path string, tensors []WriteTensor, metadata map[string]string) (err error) {
	hdr := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		hdr[metadataKey] = metadata
	}
	var off int64
	for _, t := range tensors {
		where := fmt.Sprintf("weights: Write %s: tensor %q", path, t.Name)
		if t.Name == "" || t.Name == metadataKey {
			return fmt.Errorf("%s: %w: reserved or empty name", where, ErrBadHeader)
		}
		if _, dup := hdr[t.Name]; dup {
			return fmt.Errorf("%s: %w: name used twice", where, ErrBadHeader)
		}
		size := t.DType.Size()
		if size == 0 {
			return fmt.Errorf("%s: %w %q", where, ErrUnknownDType, t.DType)
		}
		n := uint64(size)
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("%s: %w: negative dimension in %v", where, ErrBadHeader, t.Shape)
			}
			hi, lo := bits.Mul64(n, uint64(d))
			if hi != 0 || lo > math.MaxInt64 {
				return fmt.Errorf("%s: %w: shape %v overflows", where, ErrBadHeader, t.Shape)
			}
			n = lo
		}
		if uint64(len(t.Data)) != n {
			return fmt.Errorf("%s: %w: %d bytes of data, %s%v needs %d", where, ErrByteCount, len(t.Data), t.DType, t.Shape, n)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar: JSON [] rather than null
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(n)}}
		off += int64(n)
	}
	js, err := json.Marshal(hdr) // map keys are sorted: deterministic output
	if err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	if pad := (8 - len(js)%8) % 8; pad > 0 {
		js = append(js, bytes.Repeat([]byte{' '}, pad)...)
	}

	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("weights: Write: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	if _, err = f.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	if _, err = f.Write(js); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	for _, t := range tensors {
		if _, err = f.Write(t.Data); err != nil {
			return fmt.Errorf("weights: Write %s: %w", path, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	return nil
}
