package weights

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawFile builds safetensors bytes from a literal header and data, so tests
// can write headers that Write would refuse.
func rawFile(header string, data []byte) []byte {
	return withLen(uint64(len(header)), header, data)
}

// withLen builds a file whose 8-byte length field is n regardless of what
// follows.
func withLen(n uint64, header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	b = append(b, header...)
	return append(b, data...)
}

// tensorJSON is one header entry for rawFile.
func tensorJSON(name, dtype, shape string, begin, end int64) string {
	return fmt.Sprintf(`%q:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, dtype, shape, begin, end)
}

func obj(entries ...string) string { return "{" + strings.Join(entries, ",") + "}" }

type corruptCase struct {
	name   string
	data   []byte
	want   []error // every one must match errors.Is
	tensor string  // the error must name this tensor, if set
}

// corruptCases are files that Open must reject, each with its sentinel.
// They also seed the FuzzOpen corpus.
func corruptCases() []corruptCase {
	d16 := make([]byte, 16)
	ok := tensorJSON("ok", "F32", "[2]", 0, 8)
	return []corruptCase{
		{name: "empty file", data: nil, want: []error{ErrTruncated}},
		{name: "seven bytes", data: []byte{1, 2, 3, 4, 5, 6, 7}, want: []error{ErrTruncated}},
		{name: "header past EOF", data: withLen(100, "{}", nil), want: []error{ErrTruncated, ErrHeaderTooLarge}},
		{name: "header length huge", data: withLen(1<<62, "{}", nil), want: []error{ErrHeaderTooLarge}},
		{name: "header length over 100MB", data: withLen(MaxHeaderSize+1, "{}", nil), want: []error{ErrHeaderTooLarge}},
		{name: "header length max uint64", data: withLen(^uint64(0), "{}", nil), want: []error{ErrHeaderTooLarge}},
		{name: "empty header", data: withLen(0, "", d16), want: []error{ErrBadHeader}},
		{name: "invalid JSON", data: rawFile(`{"a":`, d16), want: []error{ErrBadHeader}},
		{name: "header is an array", data: rawFile(`[]`, d16), want: []error{ErrBadHeader}},
		{name: "header is a string", data: rawFile(`"x"`, d16), want: []error{ErrBadHeader}},
		{name: "trailing garbage", data: rawFile(obj(ok)+"x", d16), want: []error{ErrBadHeader}},
		{name: "two objects", data: rawFile(obj(ok)+"{}", d16), want: []error{ErrBadHeader}},
		{name: "tensor not an object", data: rawFile(`{"t":5}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "tensor null", data: rawFile(`{"t":null}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "missing dtype", data: rawFile(`{"t":{"shape":[2],"data_offsets":[0,8]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "missing shape", data: rawFile(`{"t":{"dtype":"F32","data_offsets":[0,8]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "missing data_offsets", data: rawFile(`{"t":{"dtype":"F32","shape":[2]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "dtype not a string", data: rawFile(`{"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "negative dim", data: rawFile(obj(tensorJSON("t", "F32", "[-2]", 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "fractional dim", data: rawFile(obj(tensorJSON("t", "F32", "[2.5]", 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "string dim", data: rawFile(obj(tensorJSON("t", "F32", `["2"]`, 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "dim past int64", data: rawFile(obj(tensorJSON("t", "F32", "[99999999999999999999]", 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "shape product overflow", data: rawFile(obj(tensorJSON("t", "F32", "[4294967296,4294967296]", 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "shape overflow hidden by zero dim", data: rawFile(obj(tensorJSON("t", "F32", "[0,4294967296,4294967296]", 0, 0)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "shape times dtype overflow", data: rawFile(obj(tensorJSON("t", "F64", "[2305843009213693952]", 0, 8)), d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "three data_offsets", data: rawFile(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "fractional offset", data: rawFile(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}`, d16), want: []error{ErrBadHeader}, tensor: "t"},
		{name: "duplicate tensor", data: rawFile(obj(ok, ok), d16), want: []error{ErrBadHeader}, tensor: "ok"},
		{name: "metadata not strings", data: rawFile(`{"__metadata__":{"n":1},`+ok+`}`, d16), want: []error{ErrBadHeader}},
		{name: "metadata an array", data: rawFile(`{"__metadata__":[],`+ok+`}`, d16), want: []error{ErrBadHeader}},
		{name: "offsets past data", data: rawFile(obj(tensorJSON("t", "F32", "[8]", 0, 32)), d16), want: []error{ErrOffsets}, tensor: "t"},
		{name: "begin after end", data: rawFile(obj(tensorJSON("t", "F32", "[2]", 8, 0)), d16), want: []error{ErrOffsets}, tensor: "t"},
		{name: "negative offset", data: rawFile(obj(tensorJSON("t", "F32", "[2]", -8, 0)), d16), want: []error{ErrOffsets}, tensor: "t"},
		{name: "offset past int64", data: rawFile(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}`, d16), want: []error{ErrOffsets}, tensor: "t"},
		{name: "overlap", data: rawFile(obj(tensorJSON("a", "F32", "[2]", 0, 8), tensorJSON("b", "F32", "[2]", 4, 12)), d16), want: []error{ErrOverlap}, tensor: "a"},
		{name: "overlap contained", data: rawFile(obj(tensorJSON("a", "F32", "[4]", 0, 16), tensorJSON("b", "U8", "[2]", 9, 11), tensorJSON("c", "U8", "[1]", 12, 13)), d16), want: []error{ErrOverlap}, tensor: "b"},
		{name: "same range twice", data: rawFile(obj(tensorJSON("a", "F32", "[2]", 0, 8), tensorJSON("b", "I32", "[2]", 0, 8)), d16), want: []error{ErrOverlap}, tensor: "b"},
		{name: "unknown dtype", data: rawFile(obj(tensorJSON("t", "Q4_K", "[2]", 0, 8)), d16), want: []error{ErrUnknownDType}, tensor: "t"},
		{name: "sub-byte dtype", data: rawFile(obj(tensorJSON("t", "F4", "[16]", 0, 8)), d16), want: []error{ErrUnknownDType}, tensor: "t"},
		{name: "lower-case dtype", data: rawFile(obj(tensorJSON("t", "f32", "[2]", 0, 8)), d16), want: []error{ErrUnknownDType}, tensor: "t"},
		{name: "byte count too small", data: rawFile(obj(tensorJSON("t", "F32", "[3]", 0, 8)), d16), want: []error{ErrByteCount}, tensor: "t"},
		{name: "byte count too large", data: rawFile(obj(tensorJSON("t", "BF16", "[2,2]", 0, 16)), d16), want: []error{ErrByteCount}, tensor: "t"},
		{name: "scalar byte count", data: rawFile(obj(tensorJSON("t", "F32", "[]", 0, 8)), d16), want: []error{ErrByteCount}, tensor: "t"},
	}
}

type validCase struct {
	name    string
	tensors []WriteTensor
	meta    map[string]string
}

func seq(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)*0.25 - 1
	}
	return v
}

func mustEncode(t testing.TB, dt DType, v []float32) []byte {
	t.Helper()
	b, err := EncodeFloat32(dt, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// validCases are well-formed checkpoints covering the dtypes and ranks.
func validCases(t testing.TB) []validCase {
	return []validCase{
		{name: "empty", tensors: nil},
		{name: "f32 matrix", tensors: []WriteTensor{{Name: "w", DType: F32, Shape: []int{3, 4}, Data: mustEncode(t, F32, seq(12))}}, meta: map[string]string{"format": "pt"}},
		{name: "mixed", tensors: []WriteTensor{
			{Name: "emb", DType: BF16, Shape: []int{5, 3}, Data: mustEncode(t, BF16, seq(15))},
			{Name: "bias", DType: F16, Shape: []int{3}, Data: mustEncode(t, F16, seq(3))},
			{Name: "cube", DType: F16, Shape: []int{2, 2, 2}, Data: mustEncode(t, F16, seq(8))},
			{Name: "scale", DType: F32, Shape: []int{}, Data: mustEncode(t, F32, []float32{2})},
			{Name: "ids", DType: I64, Shape: []int{2}, Data: make([]byte, 16)},
			{Name: "none", DType: F32, Shape: []int{0, 4}, Data: nil},
			{Name: "mask", DType: BOOL, Shape: []int{2, 1}, Data: []byte{1, 0}},
		}},
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
