package weights

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// withoutMmap makes Open use the ReadAt fallback for the rest of the test.
func withoutMmap(t *testing.T) {
	t.Helper()
	old := mapFile
	mapFile = func(*os.File, int64) ([]byte, error) { return nil, errors.New("mmap disabled by test") }
	t.Cleanup(func() { mapFile = old })
}

func open(t *testing.T, path string) *Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTrip(t *testing.T) {
	for _, mode := range []string{"mmap", "readat"} {
		for _, vc := range validCases(t) {
			t.Run(mode+"/"+vc.name, func(t *testing.T) {
				if mode == "readat" {
					withoutMmap(t)
				}
				path := filepath.Join(t.TempDir(), "x.safetensors")
				if err := Write(path, vc.tensors, vc.meta); err != nil {
					t.Fatal(err)
				}
				c := open(t, path)
				if _, isMap := c.sources[0].(*mmapSource); isMap != (mode == "mmap") {
					t.Fatalf("source is %T in mode %s", c.sources[0], mode)
				}
				var want []string
				for _, wt := range vc.tensors {
					want = append(want, wt.Name)
				}
				slices.Sort(want)
				if got := c.Names(); !slices.Equal(got, want) {
					t.Fatalf("Names() = %v, want %v", got, want)
				}
				if got, want := c.Metadata(), vc.meta; len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
					t.Fatalf("Metadata() = %v, want %v", got, want)
				}
				for _, wt := range vc.tensors {
					info, ok := c.Info(wt.Name)
					if !ok {
						t.Fatalf("Info(%q) missing", wt.Name)
					}
					if info.Name != wt.Name || info.DType != wt.DType || !slices.Equal(info.Shape, wt.Shape) || info.Size != int64(len(wt.Data)) || info.File != path {
						t.Fatalf("Info(%q) = %+v", wt.Name, info)
					}
					// Offset is absolute: the bytes are there in the file.
					raw, _ := os.ReadFile(path)
					if !bytes.Equal(raw[info.Offset:info.Offset+info.Size], wt.Data) {
						t.Fatalf("%q: bytes at Info offset differ", wt.Name)
					}
					b, err := c.Bytes(wt.Name)
					if err != nil || !bytes.Equal(b, wt.Data) {
						t.Fatalf("Bytes(%q) = %v, %v; want %v", wt.Name, b, err, wt.Data)
					}
					switch wt.DType {
					case F32, F16, BF16:
						f, err := c.Float32(wt.Name)
						if err != nil {
							t.Fatal(err)
						}
						want, _ := DecodeFloat32(wt.DType, wt.Data)
						if !slices.Equal(f, want) {
							t.Fatalf("Float32(%q) = %v, want %v", wt.Name, f, want)
						}
					default:
						if _, err := c.Float32(wt.Name); !errors.Is(err, errors.ErrUnsupported) {
							t.Fatalf("Float32(%q) of %s: err = %v", wt.Name, wt.DType, err)
						}
					}
				}
			})
		}
	}
}

func TestFloat32Values(t *testing.T) {
	vals := []float32{0, 1, -1.5, 0.1, 3.140625, 1e-6, 65504, -0.0078125}
	for _, dt := range []DType{F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := Write(path, []WriteTensor{{Name: "v", DType: dt, Shape: []int{len(vals)}, Data: mustEncode(t, dt, vals)}}, nil); err != nil {
				t.Fatal(err)
			}
			got, err := open(t, path).Float32("v")
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				tol := map[DType]float64{F32: 0, F16: 1.0 / 2048, BF16: 1.0 / 256}[dt]
				if d := float64(got[i] - v); d > tol*abs(float64(v))+1e-7 || -d > tol*abs(float64(v))+1e-7 {
					t.Errorf("[%d] = %v, want %v (±%g relative)", i, got[i], v, tol)
				}
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// recorder wraps a source and records every byte range read through it.
type recorder struct {
	source
	mu     sync.Mutex
	ranges [][2]int64
}

func (r *recorder) view(off, n int64) ([]byte, error) {
	r.mu.Lock()
	r.ranges = append(r.ranges, [2]int64{off, off + n})
	r.mu.Unlock()
	return r.source.view(off, n)
}

func (r *recorder) readAt(dst []byte, off int64) error {
	r.mu.Lock()
	r.ranges = append(r.ranges, [2]int64{off, off + int64(len(dst))})
	r.mu.Unlock()
	return r.source.readAt(dst, off)
}

func TestRowsCols(t *testing.T) {
	const rows, cols = 5, 7
	vals := seq(rows * cols)
	for _, mode := range []string{"mmap", "readat"} {
		for _, dt := range []DType{F32, BF16, F16} {
			t.Run(mode+"/"+string(dt), func(t *testing.T) {
				if mode == "readat" {
					withoutMmap(t)
				}
				path := filepath.Join(t.TempDir(), "x.safetensors")
				data := mustEncode(t, dt, vals)
				err := Write(path, []WriteTensor{
					{Name: "pad", DType: U8, Shape: []int{3}, Data: []byte{9, 9, 9}},
					{Name: "m", DType: dt, Shape: []int{rows, cols}, Data: data},
					{Name: "v", DType: dt, Shape: []int{cols}, Data: data[:cols*dt.Size()]},
				}, nil)
				if err != nil {
					t.Fatal(err)
				}
				c := open(t, path)
				want, _ := DecodeFloat32(dt, data)
				decode := func(b []byte, err error) []float32 {
					t.Helper()
					if err != nil {
						t.Fatal(err)
					}
					f, err := DecodeFloat32(dt, b)
					if err != nil {
						t.Fatal(err)
					}
					return f
				}
				for _, rc := range []struct {
					name       string
					start, end int
				}{{"all", 0, rows}, {"first", 0, 1}, {"middle", 1, 4}, {"last", rows - 1, rows}, {"empty", 2, 2}, {"empty at end", rows, rows}} {
					got := decode(c.Rows("m", rc.start, rc.end))
					if w := want[rc.start*cols : rc.end*cols]; !slices.Equal(got, w) {
						t.Errorf("Rows %s = %v, want %v", rc.name, got, w)
					}
				}
				if got := decode(c.Rows("v", 2, 5)); !slices.Equal(got, want[2:5]) {
					t.Errorf("Rows of 1-D = %v, want %v", got, want[2:5])
				}
				for _, cc := range []struct {
					name       string
					start, end int
				}{{"all", 0, cols}, {"first", 0, 1}, {"middle", 2, 5}, {"last", cols - 1, cols}, {"empty", 3, 3}} {
					// Watch what Cols reads: only the requested bytes.
					rec := &recorder{source: c.tensors["m"].src}
					c.tensors["m"].src = rec
					got := decode(c.Cols("m", cc.start, cc.end))
					c.tensors["m"].src = rec.source
					var w []float32
					for r := range rows {
						w = append(w, want[r*cols+cc.start:r*cols+cc.end]...)
					}
					if !slices.Equal(got, w) {
						t.Errorf("Cols %s = %v, want %v", cc.name, got, w)
					}
					info, _ := c.Info("m")
					esz := int64(dt.Size())
					var total int64
					for _, rg := range rec.ranges {
						total += rg[1] - rg[0]
						rel := rg[0] - info.Offset
						col0, col1 := (rel%(cols*esz))/esz, (rel%(cols*esz)+rg[1]-rg[0])/esz
						if rel < 0 || rg[1] > info.Offset+info.Size || col0 < int64(cc.start) || col1 > int64(cc.end) {
							t.Errorf("Cols %s read [%d,%d), outside columns [%d,%d)", cc.name, rg[0], rg[1], cc.start, cc.end)
						}
					}
					if wantBytes := int64(rows*(cc.end-cc.start)) * esz; total != wantBytes {
						t.Errorf("Cols %s read %d bytes, want %d", cc.name, total, wantBytes)
					}
				}
			})
		}
	}
}

func TestRowsZeroCopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, []WriteTensor{{Name: "m", DType: F32, Shape: []int{4, 2}, Data: mustEncode(t, F32, seq(8))}}, nil); err != nil {
		t.Fatal(err)
	}
	c := open(t, path)
	all, _ := c.Bytes("m")
	row, _ := c.Rows("m", 2, 3)
	if &row[0] != &all[16] {
		t.Error("Rows is not a view of the mapping")
	}
	if cap(row) != len(row) {
		t.Errorf("Rows cap %d > len %d: append would write past the row", cap(row), len(row))
	}
}

func TestLookupErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	vc := validCases(t)[2]
	if err := Write(path, vc.tensors, nil); err != nil {
		t.Fatal(err)
	}
	c := open(t, path)
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"Bytes missing", func() error { _, err := c.Bytes("nope"); return err }, ErrNotFound},
		{"Rows missing", func() error { _, err := c.Rows("nope", 0, 1); return err }, ErrNotFound},
		{"Cols missing", func() error { _, err := c.Cols("nope", 0, 1); return err }, ErrNotFound},
		{"Float32 missing", func() error { _, err := c.Float32("nope"); return err }, ErrNotFound},
		{"Rows negative start", func() error { _, err := c.Rows("emb", -1, 1); return err }, ErrSlice},
		{"Rows start after end", func() error { _, err := c.Rows("emb", 3, 2); return err }, ErrSlice},
		{"Rows end past dim", func() error { _, err := c.Rows("emb", 0, 6); return err }, ErrSlice},
		{"Rows of scalar", func() error { _, err := c.Rows("scale", 0, 1); return err }, ErrSlice},
		{"Rows of 1-D past end", func() error { _, err := c.Rows("bias", 1, 4); return err }, ErrSlice},
		{"Cols of 1-D", func() error { _, err := c.Cols("bias", 0, 1); return err }, ErrSlice},
		{"Cols of 3-D", func() error { _, err := c.Cols("cube", 0, 1); return err }, ErrSlice},
		{"Cols of scalar", func() error { _, err := c.Cols("scale", 0, 1); return err }, ErrSlice},
		{"Cols end past dim", func() error { _, err := c.Cols("emb", 0, 4); return err }, ErrSlice},
		{"Cols start after end", func() error { _, err := c.Cols("emb", 2, 1); return err }, ErrSlice},
		{"Float32 of I64", func() error { _, err := c.Float32("ids"); return err }, errors.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, ok := c.Info("nope"); ok {
		t.Error("Info of a missing tensor reported ok")
	}
	// Zero-row tensors slice to empty results.
	if b, err := c.Cols("none", 1, 3); err != nil || len(b) != 0 {
		t.Errorf("Cols of [0,4] = %v, %v", b, err)
	}
	if b, err := c.Rows("none", 0, 0); err != nil || len(b) != 0 {
		t.Errorf("Rows of [0,4] = %v, %v", b, err)
	}
}

func TestInfoIsACopy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, validCases(t)[1].tensors, nil); err != nil {
		t.Fatal(err)
	}
	c := open(t, path)
	info, _ := c.Info("w")
	info.Shape[0] = 99
	c.Names()[0] = "zzz"
	c.Metadata()["x"] = "y"
	if info2, _ := c.Info("w"); info2.Shape[0] != 3 || c.Names()[0] != "w" || len(c.Metadata()) != 0 {
		t.Error("caller mutations leaked into the checkpoint")
	}
}

func TestClose(t *testing.T) {
	for _, mode := range []string{"mmap", "readat"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "readat" {
				withoutMmap(t)
			}
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := Write(path, validCases(t)[1].tensors, nil); err != nil {
				t.Fatal(err)
			}
			c, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := c.Bytes("w"); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Bytes after Close: %v", err)
			}
			if _, err := c.Cols("w", 0, 1); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Cols after Close: %v", err)
			}
		})
	}
}

func TestConcurrentReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	vc := validCases(t)[2]
	if err := Write(path, vc.tensors, nil); err != nil {
		t.Fatal(err)
	}
	c := open(t, path)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				for _, n := range c.Names() {
					if _, err := c.Bytes(n); err != nil {
						t.Error(err)
					}
				}
				if _, err := c.Cols("emb", 1, 2); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestOpenCorrupt(t *testing.T) {
	for _, tc := range corruptCases() {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "bad.safetensors", tc.data)
			c, err := Open(path)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want errors.Is %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			if tc.tensor != "" && !strings.Contains(err.Error(), `"`+tc.tensor+`"`) {
				t.Errorf("error does not name tensor %q: %v", tc.tensor, err)
			}
		})
	}
}

func TestOpenAccepts(t *testing.T) {
	d16 := make([]byte, 16)
	for _, tc := range []struct {
		name  string
		data  []byte
		names []string
	}{
		{"space padding", rawFile(obj(tensorJSON("t", "F32", "[2]", 0, 8))+"      ", d16), []string{"t"}},
		{"empty header object", rawFile("{}", nil), nil},
		{"gap between tensors", rawFile(obj(tensorJSON("a", "U8", "[2]", 0, 2), tensorJSON("b", "U8", "[2]", 8, 10)), d16), []string{"a", "b"}},
		{"zero-size tensors at one offset", rawFile(obj(tensorJSON("a", "F32", "[0]", 4, 4), tensorJSON("b", "F32", "[0,3]", 4, 4), tensorJSON("c", "F32", "[2]", 0, 8)), d16), []string{"a", "b", "c"}},
		{"adjacent tensors", rawFile(obj(tensorJSON("a", "F32", "[2]", 0, 8), tensorJSON("b", "F32", "[2]", 8, 16)), d16), []string{"a", "b"}},
		{"unknown tensor fields ignored", rawFile(`{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":true}}`, d16), []string{"t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t, writeFile(t, t.TempDir(), "ok.safetensors", tc.data))
			if got := c.Names(); !slices.Equal(got, tc.names) && len(got)+len(tc.names) > 0 {
				t.Fatalf("Names() = %v, want %v", got, tc.names)
			}
		})
	}
}

func TestOpenPaths(t *testing.T) {
	dir := t.TempDir()
	tensors := validCases(t)[1].tensors
	if err := Write(filepath.Join(dir, SingleFileName), tensors, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, SingleFileName)} {
		if got := open(t, p).Names(); !slices.Equal(got, []string{"w"}) {
			t.Errorf("Open(%s).Names() = %v", p, got)
		}
	}
	empty := t.TempDir()
	if _, err := Open(empty); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), SingleFileName) {
		t.Errorf("Open(empty dir) = %v", err)
	}
	if _, err := Open(filepath.Join(empty, "missing.safetensors")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v", err)
	}
	// A directory with an index prefers it over model.safetensors.
	writeShards(t, dir, map[string][]WriteTensor{"s1.safetensors": tensors}, `{"weight_map":{"w":"s1.safetensors"},"metadata":{"total_size":48}}`)
	if got := open(t, dir).Metadata()["total_size"]; got != "48" {
		t.Errorf("directory with index: metadata total_size = %q; index not used?", got)
	}
}

func writeShards(t *testing.T, dir string, shards map[string][]WriteTensor, index string) string {
	t.Helper()
	for name, ts := range shards {
		if err := Write(filepath.Join(dir, name), ts, map[string]string{"format": "pt", "shard": name}); err != nil {
			t.Fatal(err)
		}
	}
	return writeFile(t, dir, IndexFileName, []byte(index))
}

func TestSharded(t *testing.T) {
	a := mustEncode(t, BF16, seq(6))
	b := mustEncode(t, F32, seq(4))
	shards := map[string][]WriteTensor{
		"model-00001-of-00002.safetensors": {{Name: "x.a", DType: BF16, Shape: []int{2, 3}, Data: a}, {Name: "unlisted", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		"model-00002-of-00002.safetensors": {{Name: "x.b", DType: F32, Shape: []int{4}, Data: b}},
	}
	index := `{"metadata":{"total_size":28,"format":"pt"},"weight_map":{"x.a":"model-00001-of-00002.safetensors","x.b":"model-00002-of-00002.safetensors"}}`
	dir := t.TempDir()
	idx := writeShards(t, dir, shards, index)
	c := open(t, idx)
	if got := c.Names(); !slices.Equal(got, []string{"x.a", "x.b"}) {
		t.Fatalf("Names() = %v", got)
	}
	if info, _ := c.Info("x.b"); info.File != filepath.Join(dir, "model-00002-of-00002.safetensors") || !slices.Equal(info.Shape, []int{4}) {
		t.Errorf("Info(x.b) = %+v", info)
	}
	if got, _ := c.Bytes("x.a"); !bytes.Equal(got, a) {
		t.Error("x.a bytes differ")
	}
	if got, _ := c.Rows("x.b", 1, 3); !bytes.Equal(got, b[4:12]) {
		t.Error("x.b rows differ")
	}
	if got, _ := c.Cols("x.a", 1, 2); !bytes.Equal(got, append(append([]byte{}, a[2:4]...), a[8:10]...)) {
		t.Error("x.a cols differ")
	}
	m := c.Metadata()
	if m["total_size"] != "28" || m["format"] != "pt" || m["shard"] != "model-00001-of-00002.safetensors" {
		t.Errorf("Metadata() = %v", m)
	}
	if _, err := c.Bytes("unlisted"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tensor not in weight_map: %v", err)
	}
}

func TestShardedErrors(t *testing.T) {
	good := []WriteTensor{{Name: "a", DType: U8, Shape: []int{2}, Data: []byte{1, 2}}}
	for _, tc := range []struct {
		name     string
		shards   map[string][]WriteTensor
		raw      map[string][]byte
		index    string
		want     error
		mentions string
	}{
		{name: "missing shard file", shards: map[string][]WriteTensor{"s1.safetensors": good}, index: `{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`, want: fs.ErrNotExist, mentions: "s2.safetensors"},
		{name: "tensor absent from shard", shards: map[string][]WriteTensor{"s1.safetensors": good}, index: `{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}`, want: ErrNotFound, mentions: `"b"`},
		{name: "invalid JSON", index: `{"weight_map":`, want: ErrBadHeader, mentions: IndexFileName},
		{name: "no weight_map", index: `{"metadata":{}}`, want: ErrBadHeader, mentions: "weight_map"},
		{name: "empty weight_map", index: `{"weight_map":{}}`, want: ErrBadHeader, mentions: "weight_map"},
		{name: "weight_map not strings", index: `{"weight_map":{"a":1}}`, want: ErrBadHeader},
		{name: "shard outside directory", index: `{"weight_map":{"a":"../s1.safetensors"}}`, want: ErrBadHeader, mentions: "../s1.safetensors"},
		{name: "absolute shard path", index: `{"weight_map":{"a":"/etc/passwd"}}`, want: ErrBadHeader},
		{name: "corrupt shard", raw: map[string][]byte{"s1.safetensors": rawFile(obj(tensorJSON("a", "U8", "[2]", 0, 9)), []byte{1, 2})}, index: `{"weight_map":{"a":"s1.safetensors"}}`, want: ErrOffsets, mentions: "s1.safetensors"},
		{name: "truncated shard", raw: map[string][]byte{"s1.safetensors": {1, 2}}, index: `{"weight_map":{"a":"s1.safetensors"}}`, want: ErrTruncated, mentions: "s1.safetensors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.raw {
				writeFile(t, dir, name, data)
			}
			idx := writeShards(t, dir, tc.shards, tc.index)
			c, err := Open(idx)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error does not mention %q: %v", tc.mentions, err)
			}
		})
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		tensors []WriteTensor
		want    error
	}{
		{"short data", []WriteTensor{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 7)}}, ErrByteCount},
		{"unknown dtype", []WriteTensor{{Name: "a", DType: "Q8", Shape: []int{1}, Data: make([]byte, 1)}}, ErrUnknownDType},
		{"negative dim", []WriteTensor{{Name: "a", DType: U8, Shape: []int{-1}}}, ErrBadHeader},
		{"overflow", []WriteTensor{{Name: "a", DType: F64, Shape: []int{math.MaxInt, math.MaxInt, 4}}}, ErrBadHeader},
		{"duplicate", []WriteTensor{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}}, ErrBadHeader},
		{"reserved name", []WriteTensor{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}}, ErrBadHeader},
		{"empty name", []WriteTensor{{Name: "", DType: U8, Shape: []int{1}, Data: []byte{1}}}, ErrBadHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".safetensors")
			if err := Write(path, tc.tensors, nil); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Error("a rejected Write left a file")
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

// TestWriteSharded: WriteSharded's files and index open as one checkpoint
// with every tensor's bytes, streamed ones included, in files of about the
// same size; a Fill that writes the wrong byte count is an error.
func TestWriteSharded(t *testing.T) {
	var tensors []WriteTensor
	want := map[string][]byte{}
	total := 0
	for i := range 8 {
		data := mustEncode(t, F32, seq(10+i))
		name := fmt.Sprintf("t%d", i)
		wt := WriteTensor{Name: name, DType: F32, Shape: []int{10 + i}, Data: data}
		if i%2 == 1 { // streamed in two pieces
			wt.Data, wt.Fill = nil, func(w io.Writer) error {
				if _, err := w.Write(data[:8]); err != nil {
					return err
				}
				_, err := w.Write(data[8:])
				return err
			}
		}
		tensors = append(tensors, wt)
		want[name] = data
		total += len(data)
	}
	dir := t.TempDir()
	if err := WriteSharded(dir, tensors, 3); err != nil {
		t.Fatal(err)
	}
	c := open(t, dir) // finds the index
	files := map[string]int64{}
	for name, data := range want {
		if got, err := c.Bytes(name); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %v, bytes equal %v", name, err, bytes.Equal(got, data))
		}
		info, _ := c.Info(name)
		files[filepath.Base(info.File)] += info.Size
	}
	if got := c.Metadata()["total_size"]; got != fmt.Sprint(total) {
		t.Errorf("metadata total_size %s, want %d", got, total)
	}
	if len(files) != 3 {
		t.Fatalf("tensors in %v, want 3 files", files)
	}
	for f, n := range files {
		if !strings.HasSuffix(f, "-of-00003.safetensors") || n < int64(total/3-70) || n > int64(total/3+70) {
			t.Errorf("%s holds %d bytes of %d: want about a third (±one tensor), named -of-00003", f, n, total)
		}
	}

	short := []WriteTensor{{Name: "a", DType: F32, Shape: []int{2}, Fill: func(w io.Writer) error { _, err := w.Write(make([]byte, 7)); return err }}}
	if err := WriteSharded(t.TempDir(), short, 1); !errors.Is(err, ErrByteCount) || !strings.Contains(err.Error(), "Fill wrote 7 bytes") {
		t.Errorf("short Fill: %v", err)
	}
	if err := WriteSharded(t.TempDir(), tensors, 0); err == nil {
		t.Error("0 shards accepted")
	}
}

func TestWriteLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, validCases(t)[2].tensors, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	n := int(raw[0]) | int(raw[1])<<8 | int(raw[2])<<16
	if (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-byte aligned", 8+n)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}
