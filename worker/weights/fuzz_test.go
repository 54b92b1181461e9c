package weights

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzOpen from validCases and corruptCases")

const corpusDir = "testdata/fuzz/FuzzOpen"

// fuzzSeeds returns the seed inputs by name: every valid case as Write
// produces it, and every corrupt case.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := make(map[string][]byte)
	dir := t.TempDir()
	for _, vc := range validCases(t) {
		p := filepath.Join(dir, "v.safetensors")
		if err := Write(p, vc.tensors, vc.meta); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds["valid-"+vc.name] = b
	}
	for _, cc := range corruptCases() {
		seeds["corrupt-"+cc.name] = cc.data
	}
	return seeds
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

func corpusFile(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
}

// TestFuzzCorpus checks that the committed seed corpus matches the test
// cases; run with -update-corpus to regenerate it.
func TestFuzzCorpus(t *testing.T) {
	seeds := fuzzSeeds(t)
	if *updateCorpus {
		if err := os.RemoveAll(corpusDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range seeds {
		path := filepath.Join(corpusDir, unsafeChars.ReplaceAllString(name, "-"))
		if *updateCorpus {
			if err := os.WriteFile(path, corpusFile(b), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, corpusFile(b)) {
			t.Errorf("seed %s is missing or stale (%v); run go test ./worker/weights -run TestFuzzCorpus -update-corpus", path, err)
		}
	}
}

var sentinels = []error{ErrTruncated, ErrHeaderTooLarge, ErrBadHeader, ErrOffsets, ErrOverlap, ErrUnknownDType, ErrByteCount}

func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.safetensors")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path)
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		defer c.Close()
		checkInvariants(t, c, int64(len(data)))
		mapped := readAll(t, c)

		// The ReadAt fallback must give the same answers.
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		fb := &fileSource{f: fh}
		for _, tn := range c.tensors {
			tn.src = fb
		}
		if got := readAll(t, c); !slices.EqualFunc(got, mapped, bytes.Equal) {
			t.Fatal("ReadAt fallback disagrees with the mapping")
		}
	})
}

// checkInvariants verifies, independently of the parser, that every tensor
// lies inside the file, is sized by its shape, and overlaps no other.
func checkInvariants(t *testing.T, c *Checkpoint, fileSize int64) {
	type rng struct{ lo, hi int64 }
	var rs []rng
	for _, n := range c.Names() {
		info, ok := c.Info(n)
		if !ok {
			t.Fatalf("Names lists %q but Info does not know it", n)
		}
		if info.Offset < 8 || info.Size < 0 || info.Offset+info.Size > fileSize {
			t.Fatalf("%q: range [%d,+%d) outside %d-byte file", n, info.Offset, info.Size, fileSize)
		}
		if info.Elements()*int64(info.DType.Size()) != info.Size {
			t.Fatalf("%q: %s%v but %d bytes", n, info.DType, info.Shape, info.Size)
		}
		if info.Size > 0 {
			rs = append(rs, rng{info.Offset, info.Offset + info.Size})
		}
	}
	slices.SortFunc(rs, func(a, b rng) int { return int(a.lo - b.lo) })
	for i := 1; i < len(rs); i++ {
		if rs[i].lo < rs[i-1].hi {
			t.Fatalf("ranges %v and %v overlap", rs[i-1], rs[i])
		}
	}
}

// readAll reads every tensor every way and checks the pieces agree; it
// returns everything read, for comparison across sources.
func readAll(t *testing.T, c *Checkpoint) [][]byte {
	var out [][]byte
	for _, n := range c.Names() {
		info, _ := c.Info(n)
		whole, err := c.Bytes(n)
		if err != nil || int64(len(whole)) != info.Size {
			t.Fatalf("Bytes(%q): %d bytes, %v", n, len(whole), err)
		}
		out = append(out, whole)
		switch info.DType {
		case F32, F16, BF16:
			f, err := c.Float32(n)
			if err != nil || int64(len(f)) != info.Elements() {
				t.Fatalf("Float32(%q): %d values, %v", n, len(f), err)
			}
		}
		if len(info.Shape) == 0 {
			if _, err := c.Rows(n, 0, 1); !errors.Is(err, ErrSlice) {
				t.Fatalf("Rows of scalar %q: %v", n, err)
			}
			continue
		}
		rows := info.Shape[0]
		all, err := c.Rows(n, 0, rows)
		if err != nil || !bytes.Equal(all, whole) {
			t.Fatalf("Rows(%q, 0, %d) differs from Bytes: %v", n, rows, err)
		}
		half, err := c.Rows(n, rows/2, rows)
		if err != nil || !bytes.Equal(half, whole[len(whole)-len(half):]) {
			t.Fatalf("Rows(%q, %d, %d): %v", n, rows/2, rows, err)
		}
		out = append(out, half)
		if _, err := c.Rows(n, 0, rows+1); !errors.Is(err, ErrSlice) {
			t.Fatalf("Rows(%q) past the end: %v", n, err)
		}
		if len(info.Shape) != 2 {
			if _, err := c.Cols(n, 0, 0); !errors.Is(err, ErrSlice) {
				t.Fatalf("Cols of %d-D %q: %v", len(info.Shape), n, err)
			}
			continue
		}
		cols := info.Shape[1]
		full, err := c.Cols(n, 0, cols)
		if err != nil || !bytes.Equal(full, whole) {
			t.Fatalf("Cols(%q, 0, %d) differs from Bytes: %v", n, cols, err)
		}
		right, err := c.Cols(n, cols/2, cols)
		if err != nil || len(right) != rows*(cols-cols/2)*info.DType.Size() {
			t.Fatalf("Cols(%q, %d, %d): %d bytes, %v", n, cols/2, cols, len(right), err)
		}
		out = append(out, right)
		if _, err := c.Cols(n, 1, 0); !errors.Is(err, ErrSlice) {
			t.Fatalf("Cols(%q, 1, 0): %v", n, err)
		}
	}
	return out
}

// FuzzIndex opens a fuzzed model.safetensors.index.json beside two
// valid shards.
func FuzzIndex(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"total_size":14},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`,
		`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}`,
		`{"weight_map":{"a":"s3.safetensors"}}`,
		`{"weight_map":{"a":"../s1.safetensors"}}`,
		`{"weight_map":{"a":"s1.safetensors"},"metadata":{"x":[1,{"y":null}]}}`,
		`{"weight_map":{}}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, index []byte) {
		dir := t.TempDir()
		for name, ts := range map[string][]WriteTensor{
			"s1.safetensors": {{Name: "a", DType: U8, Shape: []int{2}, Data: []byte{1, 2}}},
			"s2.safetensors": {{Name: "b", DType: BF16, Shape: []int{2, 3}, Data: make([]byte, 12)}},
		} {
			if err := Write(filepath.Join(dir, name), ts, nil); err != nil {
				t.Fatal(err)
			}
		}
		idx := filepath.Join(dir, IndexFileName)
		if err := os.WriteFile(idx, index, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(idx)
		if err != nil {
			return
		}
		defer c.Close()
		if len(c.Names()) == 0 {
			t.Fatal("an index with no tensors opened")
		}
		readAll(t, c)
	})
}
