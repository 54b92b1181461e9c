package weights

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// File names looked for when Open is given a directory, in this order.
const (
	IndexFileName  = "model.safetensors.index.json"
	SingleFileName = "model.safetensors"
)

// TensorInfo describes one tensor. Offset and Size are the absolute byte
// range of its data in File, so a caller may also read it directly.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int
	Offset int64
	Size   int64
	File   string
}

// Elements returns the number of elements (the product of Shape).
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

type tensor struct {
	info TensorInfo
	src  source
}

// Checkpoint is an opened safetensors checkpoint: one file or the shards
// named by an index. Its methods are safe for concurrent use.
//
// Slices returned by Bytes and Rows alias a read-only memory map: writing
// to them faults, and they must not be used after Close. If the file is
// truncated by another process while mapped, reading past its new end
// raises SIGBUS; safetensors files are expected to be immutable.
type Checkpoint struct {
	mu      sync.RWMutex
	closed  bool
	sources []source
	tensors map[string]*tensor
	names   []string
	meta    map[string]string
}

// Open opens a checkpoint. path may be a directory (holding
// model.safetensors.index.json or, failing that, model.safetensors), a
// safetensors file, or a sharded index (.json). Only headers are read;
// tensor data is mapped, not loaded.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weights: open checkpoint: %w", err)
	}
	if st.IsDir() {
		idx := filepath.Join(path, IndexFileName)
		if _, err := os.Stat(idx); err == nil {
			return openIndex(idx)
		}
		single := filepath.Join(path, SingleFileName)
		if _, err := os.Stat(single); err == nil {
			return openSingle(single)
		}
		return nil, fmt.Errorf("weights: %s holds neither %s nor %s; pass the checkpoint file itself: %w", path, IndexFileName, SingleFileName, fs.ErrNotExist)
	}
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		return openIndex(path)
	}
	return openSingle(path)
}

func openSingle(path string) (*Checkpoint, error) {
	src, entries, meta, err := openFile(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{sources: []source{src}, tensors: make(map[string]*tensor, len(entries)), meta: meta}
	for _, t := range entries {
		c.tensors[t.info.Name] = &tensor{info: t.info, src: src}
	}
	c.finish()
	return c, nil
}

// openFile validates the header of one safetensors file and maps it.
func openFile(path string) (source, []tensor, map[string]string, error) {
	// Stat first: opening a FIFO or device could block or misbehave.
	if st, err := os.Stat(path); err != nil {
		return nil, nil, nil, fmt.Errorf("weights: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, nil, nil, fmt.Errorf("weights: %s is not a regular file (%v); pass a safetensors file, an index .json or a directory", path, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("weights: %w", err)
	}
	entries, meta, dataStart, size, err := readHeader(f, path)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	src := openSource(f, size)
	out := make([]tensor, len(entries))
	for i, e := range entries {
		out[i] = tensor{info: TensorInfo{
			Name:   e.name,
			DType:  e.dtype,
			Shape:  e.shape,
			Offset: dataStart + e.begin,
			Size:   e.end - e.begin,
			File:   path,
		}}
	}
	return src, out, meta, nil
}

func readHeader(f *os.File, path string) (entries []entry, meta map[string]string, dataStart, size int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("weights: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, 0, 0, fmt.Errorf("weights: %s is not a regular file", path)
	}
	size = st.Size()
	var lenBuf [8]byte
	if size < 8 {
		return nil, nil, 0, 0, fmt.Errorf("weights: %s: %w: %d bytes, but a safetensors file starts with an 8-byte header length (incomplete download?)", path, ErrTruncated, size)
	}
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("weights: reading %s: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > MaxHeaderSize {
		return nil, nil, 0, 0, fmt.Errorf("weights: %s: %w: header length %d exceeds the %d-byte limit (not a safetensors file?)", path, ErrHeaderTooLarge, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		// Both: the length points past EOF, and the file is shorter
		// than its header.
		return nil, nil, 0, 0, fmt.Errorf("weights: %s: %w: %w: header length %d but only %d bytes follow (incomplete download?)", path, ErrTruncated, ErrHeaderTooLarge, n, size-8)
	}
	hdr := make([]byte, n)
	if _, err := f.ReadAt(hdr, 8); err != nil && !(err == io.EOF && len(hdr) == 0) {
		return nil, nil, 0, 0, fmt.Errorf("weights: reading %s: %w", path, err)
	}
	dataStart = 8 + int64(n)
	entries, meta, err = parseHeader(hdr, size-dataStart, path)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	return entries, meta, dataStart, size, nil
}

// index mirrors model.safetensors.index.json.
type index struct {
	Metadata  map[string]json.RawMessage `json:"metadata"`
	WeightMap *map[string]string         `json:"weight_map"`
}

func openIndex(path string) (_ *Checkpoint, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if st.Size() > MaxHeaderSize {
		return nil, fmt.Errorf("weights: %s: %w: index is %d bytes, over the %d-byte limit", path, ErrHeaderTooLarge, st.Size(), MaxHeaderSize)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var ix index
	if err := json.Unmarshal(raw, &ix); err != nil {
		return nil, fmt.Errorf("weights: %s: %w: index is not valid JSON of the form {\"weight_map\": {tensor: shard file}}: %v", path, ErrBadHeader, err)
	}
	if ix.WeightMap == nil || len(*ix.WeightMap) == 0 {
		return nil, fmt.Errorf("weights: %s: %w: index has no weight_map entries", path, ErrBadHeader)
	}
	dir := filepath.Dir(path)
	c := &Checkpoint{tensors: make(map[string]*tensor, len(*ix.WeightMap)), meta: make(map[string]string)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()

	// Shards in sorted order, so that errors and metadata are deterministic.
	byShard := make(map[string][]string)
	for name, shard := range *ix.WeightMap {
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	for _, shard := range shards {
		if !filepath.IsLocal(filepath.FromSlash(shard)) {
			return nil, fmt.Errorf("weights: %s: %w: shard %q must be a relative path inside %s", path, ErrBadHeader, shard, dir)
		}
		file := filepath.Join(dir, filepath.FromSlash(shard))
		src, entries, meta, err := openFile(file)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w (shard %q named by %s is missing; incomplete download?)", err, shard, path)
			}
			return nil, fmt.Errorf("%w (in shard %q named by %s)", err, shard, path)
		}
		c.sources = append(c.sources, src)
		for k, v := range meta {
			if _, ok := c.meta[k]; !ok {
				c.meta[k] = v
			}
		}
		present := make(map[string]TensorInfo, len(entries))
		for _, t := range entries {
			present[t.info.Name] = t.info
		}
		names := byShard[shard]
		slices.Sort(names)
		for _, name := range names {
			info, ok := present[name]
			if !ok {
				return nil, fmt.Errorf("weights: %s maps tensor %q to %s, which has no such tensor (index and shards out of sync?): %w", path, name, file, ErrNotFound)
			}
			c.tensors[name] = &tensor{info: info, src: src}
		}
	}
	// Index metadata wins over shard metadata. HF writes numbers here
	// (total_size); non-string values are kept as their JSON text.
	for k, v := range ix.Metadata {
		var s string
		if json.Unmarshal(v, &s) == nil {
			c.meta[k] = s
		} else {
			c.meta[k] = string(v)
		}
	}
	c.finish()
	return c, nil
}

func (c *Checkpoint) finish() {
	c.names = make([]string, 0, len(c.tensors))
	for n := range c.tensors {
		c.names = append(c.names, n)
	}
	slices.Sort(c.names)
	if c.meta == nil {
		c.meta = map[string]string{}
	}
}

// Close unmaps and closes every file. Slices returned earlier by Bytes or
// Rows must not be used afterwards. Close is idempotent.
func (c *Checkpoint) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, s := range c.sources {
		if err := s.close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.sources = nil
	return errors.Join(errs...)
}

// Names returns the tensor names in sorted order (a new slice).
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Info returns the description of a tensor. Its Shape is a copy.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	t, ok := c.tensors[name]
	if !ok {
		return TensorInfo{}, false
	}
	info := t.info
	info.Shape = slices.Clone(info.Shape)
	return info, true
}

// Metadata returns a copy of the checkpoint's __metadata__ (for a sharded
// checkpoint: the index's metadata over the shards' metadata).
func (c *Checkpoint) Metadata() map[string]string {
	m := make(map[string]string, len(c.meta))
	for k, v := range c.meta {
		m[k] = v
	}
	return m
}

// lookup finds a tensor and holds the read lock; the caller must call
// c.mu.RUnlock when err is nil.
func (c *Checkpoint) lookup(op, name string) (*tensor, error) {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, fmt.Errorf("weights: %s(%q): checkpoint is closed: %w", op, name, fs.ErrClosed)
	}
	t, ok := c.tensors[name]
	if !ok {
		c.mu.RUnlock()
		return nil, fmt.Errorf("weights: %s(%q): %w; see Names() for what the checkpoint holds", op, name, ErrNotFound)
	}
	return t, nil
}

// Bytes returns the raw little-endian data of a whole tensor. With a
// memory map it is zero-copy and read-only; do not write to it.
func (c *Checkpoint) Bytes(name string) ([]byte, error) {
	t, err := c.lookup("Bytes", name)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	return t.src.view(t.info.Offset, t.info.Size)
}

// rowStride returns the byte size of one step along dim 0 and the length
// of dim 0 (for 1-D tensors: one element and the element count).
func rowStride(info TensorInfo) (stride int64, rows int) {
	stride = int64(info.DType.Size())
	for _, d := range info.Shape[1:] {
		stride *= int64(d)
	}
	return stride, info.Shape[0]
}

func checkRange(op string, info TensorInfo, start, end, n int) error {
	if start < 0 || start > end || end > n {
		return fmt.Errorf("weights: %s(%q, %d, %d) on %s: %w: need 0 <= start <= end <= %d", op, info.Name, start, end, info.File, ErrSlice, n)
	}
	return nil
}

// Rows returns rows [start, end) along dim 0 (for a 1-D tensor: elements)
// as raw bytes, zero-copy from the mapping like Bytes.
func (c *Checkpoint) Rows(name string, start, end int) ([]byte, error) {
	t, err := c.lookup("Rows", name)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	if len(t.info.Shape) == 0 {
		return nil, fmt.Errorf("weights: Rows(%q) on %s: %w: tensor is a scalar; use Bytes", name, t.info.File, ErrSlice)
	}
	stride, n := rowStride(t.info)
	if err := checkRange("Rows", t.info, start, end, n); err != nil {
		return nil, err
	}
	return t.src.view(t.info.Offset+int64(start)*stride, int64(end-start)*stride)
}

// Cols returns columns [start, end) of every row of a 2-D tensor, packed
// row after row into a new buffer. Only those byte ranges are read.
func (c *Checkpoint) Cols(name string, start, end int) ([]byte, error) {
	t, err := c.lookup("Cols", name)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	if len(t.info.Shape) != 2 {
		return nil, fmt.Errorf("weights: Cols(%q) on %s: %w: tensor has shape %v; Cols needs 2-D", name, t.info.File, ErrSlice, t.info.Shape)
	}
	rows, cols := t.info.Shape[0], t.info.Shape[1]
	if err := checkRange("Cols", t.info, start, end, cols); err != nil {
		return nil, err
	}
	esz := int64(t.info.DType.Size())
	stride := int64(cols) * esz
	width := int64(end-start) * esz
	if int64(rows)*width > math.MaxInt {
		return nil, fmt.Errorf("weights: Cols(%q, %d, %d) on %s: %d bytes do not fit in memory on this platform; take fewer columns", name, start, end, t.info.File, int64(rows)*width)
	}
	out := make([]byte, int64(rows)*width)
	if width == 0 {
		return out, nil
	}
	for r := range int64(rows) {
		if err := t.src.readAt(out[r*width:(r+1)*width], t.info.Offset+r*stride+int64(start)*esz); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Float32 decodes a whole F32, F16 or BF16 tensor into a new []float32.
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	t, err := c.lookup("Float32", name)
	if err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	switch t.info.DType {
	case F32, F16, BF16:
	default:
		return nil, fmt.Errorf("weights: Float32(%q) on %s: dtype %s is not F32, F16 or BF16; use Bytes: %w", name, t.info.File, t.info.DType, errors.ErrUnsupported)
	}
	b, err := t.src.view(t.info.Offset, t.info.Size)
	if err != nil {
		return nil, err
	}
	return DecodeFloat32(t.info.DType, b)
}
