package transport

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// FuzzDecodeFrame: no byte string makes DecodeFrame or the reassembly
// panic; what DecodeFrame accepts passes ValidateFrame again after a
// round trip.
func FuzzDecodeFrame(f *testing.F) {
	seed := func(fr *tesserav1.Frame) {
		b, _ := proto.Marshal(fr)
		f.Add(b)
	}
	seed(frame(act, f32, []int64{2, 2}, 0, 1, make([]byte, 16)))
	seed(frame(act, f32, []int64{4, 4}, 1, 3, make([]byte, 24)))
	seed(frame(act, tesserav1.DType_DTYPE_BF16, []int64{3}, 0, 2, make([]byte, 4)))
	seed(frame(tesserav1.FrameKind_FRAME_KIND_STEP, tesserav1.DType_DTYPE_U8, []int64{5}, 0, 1, []byte("hello")))
	seed(frame(act, f32, []int64{1 << 40, 1 << 40}, 0, 1, nil))
	seed(frame(act, f32, []int64{1}, 0, 0, make([]byte, 4)))
	f.Add([]byte{})
	f.Add([]byte("\xff\xfe not a protobuf"))

	tr := NewInProcess()
	r, err := NewReceiver(context.Background(), tr, "fuzz", MaxTensor(1<<20), MaxPending(4<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err == nil {
			b2, err := proto.Marshal(fr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeFrame(b2); err != nil {
				t.Fatalf("round trip rejected: %v", err)
			}
		}
		// The receiver validates on its own: give it the raw decode.
		raw := new(tesserav1.Frame)
		if proto.Unmarshal(b, raw) == nil {
			r.deliver(raw)
		}
	})
}
