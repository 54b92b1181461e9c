package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

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

// FuzzMeshStream: no byte string from a mesh peer, as a hello or as the
// frames after it, makes the hub or a reduction panic or hang; what a
// reduction accepts is a whole partial of the expected size.
func FuzzMeshStream(f *testing.F) {
	hello := new(bytes.Buffer)
	_ = writeHello(hello, subj.Cluster, meshKey{plan: 1, stage: 0, from: 1, to: 0, ranks: 2})
	f.Add(hello.Bytes())
	f.Add(append(frameHeader(0, 0, 16), make([]byte, 16)...))
	f.Add(append(frameHeader(0, 0, 8), make([]byte, 8)...))
	f.Add(append(frameHeader(1<<40, 7, 1<<30), 1))
	f.Add([]byte("TSRF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := readHello(bytes.NewReader(b), subj.Cluster); err == nil && (k.from <= k.to || k.from >= k.ranks) {
			t.Fatalf("accepted hello %+v", k)
		}
		a, c := net.Pipe()
		go func() { _, _ = c.Write(b); c.Close() }()
		p := newMeshPeer(a, 1<<20)
		defer p.close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var dropped atomic.Int64
		data, err := p.recv(ctx, 0, 0, &dropped)
		if err == nil && len(data)%4 != 0 {
			t.Fatalf("accepted a %d-byte partial", len(data))
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("a closed stream left the reduction waiting")
		}
	})
}
