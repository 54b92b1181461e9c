package weights

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
)

// MaxHeaderSize is the largest JSON header accepted (100 MB), as in the
// reference implementation.
const MaxHeaderSize = 100 << 20

const metadataKey = "__metadata__"

// Sentinel errors. Every error returned by this package that is about the
// content of a checkpoint wraps one of them (test with errors.Is) and names
// the file and, where there is one, the tensor.
var (
	// ErrTruncated: the file is shorter than 8 bytes or than its header says.
	ErrTruncated = errors.New("safetensors: file truncated")
	// ErrHeaderTooLarge: the header length runs past the end of the file
	// or exceeds MaxHeaderSize.
	ErrHeaderTooLarge = errors.New("safetensors: header too large")
	// ErrBadHeader: the header (or index) is not valid JSON, lacks fields,
	// has fields of the wrong type, negative or overflowing dimensions, or
	// duplicate tensor names.
	ErrBadHeader = errors.New("safetensors: invalid header")
	// ErrOffsets: data_offsets lie outside the data section or begin > end.
	ErrOffsets = errors.New("safetensors: data offsets out of range")
	// ErrOverlap: the byte ranges of two tensors overlap.
	ErrOverlap = errors.New("safetensors: tensors overlap")
	// ErrUnknownDType: the dtype is not one this package supports.
	ErrUnknownDType = errors.New("safetensors: unknown dtype")
	// ErrByteCount: end-begin differs from the product of the shape times
	// the dtype size.
	ErrByteCount = errors.New("safetensors: byte count does not match shape")
	// ErrNotFound: no tensor of that name.
	ErrNotFound = errors.New("safetensors: tensor not found")
	// ErrSlice: a row or column range is out of bounds, reversed, or asked
	// of a tensor of the wrong rank.
	ErrSlice = errors.New("safetensors: bad slice range")
)

// entry is one tensor as parsed from a header; begin and end are relative
// to the start of the data section.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int64
}

// rawEntry mirrors the JSON of one tensor. Pointers tell missing fields
// from zero values; numbers are kept as raw JSON so that only plain integer
// literals are accepted and range errors can be classified.
type rawEntry struct {
	DType       *string            `json:"dtype"`
	Shape       *[]json.RawMessage `json:"shape"`
	DataOffsets *[]json.RawMessage `json:"data_offsets"`
}

// parseHeader validates a safetensors JSON header against a data section
// of dataLen bytes. file is used only in error messages.
func parseHeader(hdr []byte, dataLen int64, file string) ([]entry, map[string]string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("weights: %s: %w: %s", file, ErrBadHeader, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, bad("header is not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, bad("header must be a JSON object")
	}
	var (
		entries []entry
		meta    map[string]string
		seen    = make(map[string]bool)
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, bad("header is not JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, bad("header is not JSON: key is %T", tok)
		}
		if seen[name] {
			return nil, nil, bad("key %q appears twice", name)
		}
		seen[name] = true
		if name == metadataKey {
			var m map[string]string
			if err := dec.Decode(&m); err != nil {
				return nil, nil, bad("__metadata__ must map strings to strings: %v", err)
			}
			meta = m
			continue
		}
		var raw rawEntry
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, bad("tensor %q: %v", name, err)
		}
		e, err := checkEntry(name, raw, dataLen, file)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, nil, bad("header is not JSON: %v", err)
	}
	// Only JSON whitespace (writers pad with spaces) may follow the object.
	rest := hdr[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, nil, bad("unexpected bytes after the header object")
	}
	if err := checkOverlap(entries, file); err != nil {
		return nil, nil, err
	}
	return entries, meta, nil
}

func checkEntry(name string, raw rawEntry, dataLen int64, file string) (entry, error) {
	where := fmt.Sprintf("weights: %s: tensor %q", file, name)
	if raw.DType == nil || raw.Shape == nil || raw.DataOffsets == nil {
		return entry{}, fmt.Errorf("%s: %w: needs dtype, shape and data_offsets", where, ErrBadHeader)
	}
	e := entry{name: name, dtype: DType(*raw.DType)}
	size := e.dtype.Size()
	if size == 0 {
		return entry{}, fmt.Errorf("%s: %w %q (supported: BOOL U8 I8 F8_E4M3 F8_E5M2 F8_E8M0 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64 C64)", where, ErrUnknownDType, *raw.DType)
	}
	// Shape: non-negative integers whose product, times the element size,
	// fits in int64. Zero dims are treated as 1 for the overflow check so
	// that every row stride is representable too.
	e.shape = make([]int, len(*raw.Shape))
	nbytes, bound := int64(size), uint64(size)
	for i, n := range *raw.Shape {
		d, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || d < 0 {
			return entry{}, fmt.Errorf("%s: %w: dimension %d is %s; dimensions must be non-negative integers", where, ErrBadHeader, i, n)
		}
		if d > math.MaxInt {
			return entry{}, fmt.Errorf("%s: %w: dimension %d (%d) too large for this platform", where, ErrBadHeader, i, d)
		}
		e.shape[i] = int(d)
		hi, lo := bits.Mul64(bound, uint64(max(d, 1)))
		if hi != 0 || lo > math.MaxInt64 {
			return entry{}, fmt.Errorf("%s: %w: shape %s overflows", where, ErrBadHeader, rawList(*raw.Shape))
		}
		bound = lo
		nbytes *= d
	}
	offs := *raw.DataOffsets
	if len(offs) != 2 {
		return entry{}, fmt.Errorf("%s: %w: data_offsets must be [begin, end], got %d values", where, ErrBadHeader, len(offs))
	}
	var be [2]int64
	for i, n := range offs {
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return entry{}, fmt.Errorf("%s: %w: data_offsets %s past the %d-byte data section", where, ErrOffsets, rawList(offs), dataLen)
			}
			return entry{}, fmt.Errorf("%s: %w: data_offsets must be integers, got %s", where, ErrBadHeader, n)
		}
		be[i] = v
	}
	e.begin, e.end = be[0], be[1]
	switch {
	case e.begin < 0 || e.end < 0:
		return entry{}, fmt.Errorf("%s: %w: negative data_offsets %s", where, ErrOffsets, rawList(offs))
	case e.begin > e.end:
		return entry{}, fmt.Errorf("%s: %w: begin %d > end %d", where, ErrOffsets, e.begin, e.end)
	case e.end > dataLen:
		return entry{}, fmt.Errorf("%s: %w: data_offsets [%d, %d] past the %d-byte data section (file truncated?)", where, ErrOffsets, e.begin, e.end, dataLen)
	case e.end-e.begin != nbytes:
		return entry{}, fmt.Errorf("%s: %w: data_offsets span %d bytes but %s%v needs %d", where, ErrByteCount, e.end-e.begin, e.dtype, e.shape, nbytes)
	}
	return e, nil
}

// checkOverlap reports two tensors whose non-empty byte ranges intersect.
func checkOverlap(entries []entry, file string) error {
	idx := make([]int, 0, len(entries))
	for i, e := range entries {
		if e.end > e.begin {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		ea, eb := entries[idx[a]], entries[idx[b]]
		if ea.begin != eb.begin {
			return ea.begin < eb.begin
		}
		return ea.name < eb.name
	})
	for k := 1; k < len(idx); k++ {
		prev, cur := entries[idx[k-1]], entries[idx[k]]
		if cur.begin < prev.end {
			return fmt.Errorf("weights: %s: %w: tensor %q [%d, %d) and tensor %q [%d, %d)", file, ErrOverlap, prev.name, prev.begin, prev.end, cur.name, cur.begin, cur.end)
		}
	}
	return nil
}

// rawList formats a list of raw JSON values as it appeared in the header.
func rawList(vals []json.RawMessage) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v)
	}
	b.WriteByte(']')
	return b.String()
}
