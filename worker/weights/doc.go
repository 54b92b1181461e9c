// Package weights reads safetensors checkpoints: a single model.safetensors
// file or a sharded checkpoint described by model.safetensors.index.json.
//
// Files are memory-mapped read-only (falling back to ReadAt where mapping
// fails), and only headers are read at Open. A worker then takes just its
// slice of each tensor, as DESIGN.md's "Loading" asks: Rows returns a
// zero-copy byte range along dim 0, and Cols copies out a column range of
// a 2-D tensor touching only those bytes. Bytes and Float32 give whole
// tensors.
//
// Every header is validated at Open: truncation, oversize headers, bad
// JSON, unknown dtypes, offsets outside the data section, overlapping
// tensors and byte counts that disagree with shapes are each reported with
// a sentinel error (ErrTruncated, ErrHeaderTooLarge, ErrBadHeader,
// ErrUnknownDType, ErrOffsets, ErrOverlap, ErrByteCount) wrapped with the
// file and tensor names. Lookups fail with ErrNotFound and ErrSlice. No
// input makes the package panic.
//
// Write produces valid safetensors files, for tools and tests, streaming
// tensors that are too big to hold; WriteSharded splits a checkpoint over
// several files with an index, as Hugging Face saves large models.
// F16ToF32, BF16ToF32, F32ToF16 and F32ToBF16 convert single values
// (rounding to nearest even when narrowing).
package weights
