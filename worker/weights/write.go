package weights

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// WriteTensor is one tensor for Write. Data holds its little-endian
// elements, row-major; see EncodeFloat32 for float data. A tensor too big
// to hold leaves Data nil and sets Fill, which writes exactly those bytes
// to w when the file reaches the tensor (so a checkpoint larger than memory
// streams to disk).
type WriteTensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	Fill  func(w io.Writer) error
}

// size is the tensor's byte count from its dtype and shape.
func (t WriteTensor) size() (int64, error) {
	size := t.DType.Size()
	if size == 0 {
		return 0, fmt.Errorf("%w %q", ErrUnknownDType, t.DType)
	}
	n := uint64(size)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension in %v", ErrBadHeader, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("%w: shape %v overflows", ErrBadHeader, t.Shape)
		}
		n = lo
	}
	return int64(n), nil
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
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
		n, err := t.size()
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if t.Fill == nil && int64(len(t.Data)) != n {
			return fmt.Errorf("%s: %w: %d bytes of data, %s%v needs %d", where, ErrByteCount, len(t.Data), t.DType, t.Shape, n)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{} // a scalar: JSON [] rather than null
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + n}}
		off += n
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
	bw := bufio.NewWriterSize(f, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	bw.Write(lenBuf[:])
	bw.Write(js)
	for _, t := range tensors {
		if t.Fill == nil {
			bw.Write(t.Data)
			continue
		}
		c := &counter{w: bw}
		if err = t.Fill(c); err != nil {
			return fmt.Errorf("weights: Write %s: tensor %q: %w", path, t.Name, err)
		}
		if want := hdr[t.Name].(headerEntry).DataOffsets; c.n != want[1]-want[0] {
			return fmt.Errorf("weights: Write %s: tensor %q: %w: Fill wrote %d bytes, %s%v needs %d", path, t.Name, ErrByteCount, c.n, t.DType, t.Shape, want[1]-want[0])
		}
	}
	// A bufio.Writer keeps its first error, so one check after Flush covers every write.
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("weights: Write %s: %w", path, err)
	}
	return nil
}

// WriteSharded writes tensors into dir as a sharded checkpoint: up to
// shards safetensors files named as Hugging Face names them
// (model-00001-of-00004.safetensors), each a run of consecutive tensors of
// about the same size (no file is empty, so there may be fewer), and the
// model.safetensors.index.json that maps every tensor to its file, with
// the total size in its metadata. Tensors stream through Write, so those
// with Fill are never held in memory.
func WriteSharded(dir string, tensors []WriteTensor, shards int) error {
	if shards < 1 {
		return fmt.Errorf("weights: WriteSharded: %w: %d shards", ErrBadHeader, shards)
	}
	sizes := make([]int64, len(tensors))
	var total int64
	for i, t := range tensors {
		n, err := t.size()
		if err != nil {
			return fmt.Errorf("weights: WriteSharded: tensor %q: %w", t.Name, err)
		}
		sizes[i], total = n, total+n
	}
	// A tensor goes to the shard its middle byte falls in.
	var groups [][]WriteTensor
	var off int64
	last := -1
	for i, t := range tensors {
		k := 0
		if total > 0 {
			k = int((off + sizes[i]/2) * int64(shards) / total)
		}
		if k != last {
			groups = append(groups, nil)
			last = k
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
		off += sizes[i]
	}
	weightMap := make(map[string]string, len(tensors))
	for k, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(groups))
		if err := Write(filepath.Join(dir, name), g, nil); err != nil {
			return err
		}
		for _, t := range g {
			weightMap[t.Name] = name
		}
	}
	js, err := json.MarshalIndent(map[string]any{"metadata": map[string]int64{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return fmt.Errorf("weights: WriteSharded: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, IndexFileName), append(js, '\n'), 0o644)
}
