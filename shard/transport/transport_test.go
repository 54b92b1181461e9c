package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// startNATS runs an embedded server with the given max payload (0: the
// default 1 MiB) for the test.
func startNATS(t testing.TB, maxPayload int32) string {
	t.Helper()
	s, url, err := EmbeddedNATS(&server.Options{MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return url
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newNATS(t testing.TB, url string) *NATS {
	t.Helper()
	tr, err := NewNATS(connect(t, url), PublishConn(connect(t, url)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// checkGoroutines fails the test when goroutines started during it are
// still running after it and its cleanups (goleak retries for a while).
func checkGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

var subj = Subjects{Cluster: "test", Plan: 7}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{subj.Step(), "tessera.test.7.step"},
		{subj.Act(2, 1), "tessera.test.7.s2.r1.act"},
		{subj.Reduce(0, 3), "tessera.test.7.s0.r3.reduce"},
		{subj.ReduceAll(1), "tessera.test.7.s1.*.reduce"},
		{subj.Result(4, 0), "tessera.test.7.s4.r0.result"},
		{subj.ResultAll(), "tessera.test.7.*.*.result"},
		{subj.All(), "tessera.test.7.>"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, c := range []string{"", "a.b", "a*", "a>", "a b"} {
		if _, err := NewSubjects(c, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewSubjects(%q) = %v", c, err)
		}
	}
	if s, err := NewSubjects("prod-1", 3); err != nil || s.Plan != 3 {
		t.Errorf("NewSubjects = %v, %v", s, err)
	}
}

func TestMatchSubject(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", false},
		{"a.*.c", "a.b.c", true},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"*", "a", true},
		{"*", "a.b", false},
		{subj.ReduceAll(1), subj.Reduce(1, 5), true},
		{subj.ReduceAll(1), subj.Reduce(2, 5), false},
		{subj.ResultAll(), subj.Result(3, 1), true},
	} {
		if got := matchSubject(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("matchSubject(%q, %q) = %v", tc.pattern, tc.subject, got)
		}
	}
}

// TestCloneFrameCopiesEveryField guards cloneFrame against new fields.
func TestCloneFrameCopiesEveryField(t *testing.T) {
	f := &tesserav1.Frame{}
	m := f.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(protoreflect.ValueOfInt64(int64(i + 1)))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte{1, 2, 3}))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Uint64Kind:
			m.Set(fd, protoreflect.ValueOfUint64(uint64(i+1)))
		case fd.Kind() == protoreflect.Int32Kind:
			m.Set(fd, protoreflect.ValueOfInt32(int32(i+1)))
		default:
			t.Fatalf("field %s of kind %v: teach this test and cloneFrame", fd.Name(), fd.Kind())
		}
	}
	c := cloneFrame(f)
	if !proto.Equal(f, c) {
		t.Fatalf("clone differs:\n%v\n%v", f, c)
	}
	c.Data[0] = 9
	if f.Data[0] == 9 {
		t.Error("clone aliases data")
	}
}

func frame(kind tesserav1.FrameKind, dt tesserav1.DType, shape []int64, chunk, chunks int32, data []byte) *tesserav1.Frame {
	return &tesserav1.Frame{PlanVersion: 7, StepId: 1, Kind: kind, Dtype: dt, Shape: shape, Chunk: chunk, Chunks: chunks, Data: data}
}

const (
	act = tesserav1.FrameKind_FRAME_KIND_ACTIVATION
	f32 = tesserav1.DType_DTYPE_F32
)

func TestValidateFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *tesserav1.Frame
		ok   bool
	}{
		{"single chunk", frame(act, f32, []int64{2, 2}, 0, 1, make([]byte, 16)), true},
		{"scalar", frame(act, f32, nil, 0, 1, make([]byte, 4)), true},
		{"empty tensor", frame(act, f32, []int64{0, 4}, 0, 1, nil), true},
		{"middle chunk", frame(act, f32, []int64{4, 4}, 1, 3, make([]byte, 24)), true},
		{"chunks=0", frame(act, f32, []int64{1}, 0, 0, make([]byte, 4)), false},
		{"chunk=chunks", frame(act, f32, []int64{4}, 2, 2, make([]byte, 8)), false},
		{"negative chunk", frame(act, f32, []int64{4}, -1, 2, make([]byte, 8)), false},
		{"short data", frame(act, f32, []int64{2, 2}, 0, 1, make([]byte, 15)), false},
		{"long data", frame(act, f32, []int64{2, 2}, 0, 1, make([]byte, 17)), false},
		{"chunk larger than tensor", frame(act, f32, []int64{2}, 0, 2, make([]byte, 12)), false},
		{"empty chunk", frame(act, f32, []int64{2}, 0, 2, nil), false},
		{"more chunks than bytes", frame(act, f32, []int64{1}, 0, 5, make([]byte, 1)), false},
		{"unknown dtype", frame(act, 99, []int64{1}, 0, 1, make([]byte, 4)), false},
		{"unspecified dtype", frame(act, 0, []int64{1}, 0, 1, make([]byte, 4)), false},
		{"unknown kind", frame(42, f32, []int64{1}, 0, 1, make([]byte, 4)), false},
		{"negative dim", frame(act, f32, []int64{-1}, 0, 1, nil), false},
		{"overflowing shape", frame(act, f32, []int64{1 << 40, 1 << 40}, 0, 1, nil), false},
		{"too many dims", frame(act, f32, make([]int64, 9), 0, 1, nil), false},
		{"negative rank", &tesserav1.Frame{Kind: act, Dtype: f32, Rank: -1, Chunks: 1, Shape: []int64{1}, Data: make([]byte, 4)}, false},
	} {
		err := ValidateFrame(tc.f)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", tc.name, err)
		}
		b, _ := proto.Marshal(tc.f)
		if _, err := DecodeFrame(b); (err == nil) != tc.ok {
			t.Errorf("%s: DecodeFrame: %v", tc.name, err)
		}
	}
	if _, err := DecodeFrame([]byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage: %v", err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// transports runs f against the in-process transport and a real NATS
// server, both with a 64 KiB max payload.
func transports(t *testing.T, f func(t *testing.T, newT func() Transport)) {
	t.Run("inprocess", func(t *testing.T) {
		tr := NewInProcess(InProcessMaxPayload(64 << 10))
		defer tr.Close()
		f(t, func() Transport { return tr })
	})
	t.Run("nats", func(t *testing.T) {
		url := startNATS(t, 64<<10)
		f(t, func() Transport { return newNATS(t, url) })
	})
}

func TestChunkedTensorReassembles(t *testing.T) {
	transports(t, func(t *testing.T, newT func() Transport) {
		checkGoroutines(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tx, rx := newT(), newT()
		if got := tx.MaxPayload(); got != 64<<10 {
			t.Fatalf("MaxPayload = %d", got)
		}
		r, err := NewReceiver(ctx, rx, subj.Act(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		data := randomBytes(1<<20, 1) // 1 MiB: 17 chunks of < 64 KiB
		meta := &tesserav1.Frame{PlanVersion: 7, StepId: 3, Kind: act, Dtype: f32, Shape: []int64{256, 1024}}
		if err := SendTensor(ctx, tx, subj.Act(0, 0), meta, data); err != nil {
			t.Fatal(err)
		}
		// A proto tensor (a Step) on the same subject.
		step := &tesserav1.Step{PlanVersion: 7, StepId: 3, Tokens: []int32{1, 2, 3}, TopK: 5}
		if err := SendProto(ctx, tx, subj.Act(0, 0), &tesserav1.Frame{PlanVersion: 7, StepId: 3, Kind: tesserav1.FrameKind_FRAME_KIND_STEP}, step); err != nil {
			t.Fatal(err)
		}
		got, err := r.Wait(ctx, KeyOf(meta))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Data) != string(data) || got.Shape[0] != 256 || got.DType != f32 {
			t.Fatalf("reassembled tensor differs (%d bytes, shape %v)", len(got.Data), got.Shape)
		}
		st, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var back tesserav1.Step
		if err := proto.Unmarshal(st.Data, &back); err != nil || !proto.Equal(&back, step) {
			t.Fatalf("step: %v %v", &back, err)
		}
		if r.Dropped() != 0 {
			t.Errorf("dropped %d: %+v", r.Dropped(), r.Stats())
		}
		// A frame over the max payload is refused, not truncated.
		big := frame(act, tesserav1.DType_DTYPE_U8, []int64{70 << 10}, 0, 1, make([]byte, 70<<10))
		if err := tx.Publish(ctx, subj.Act(0, 0), big); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Publish 70 KiB: %v", err)
		}
		// A data size that does not match the shape is refused.
		if err := SendTensor(ctx, tx, subj.Act(0, 0), meta, data[1:]); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMalformed) {
			t.Errorf("SendTensor with short data: %v", err)
		}
	})
}

// TestMalformedFramesCounted sends every kind of bad frame between valid
// tensors: the valid ones arrive, the bad ones are counted.
func TestMalformedFramesCounted(t *testing.T) {
	checkGoroutines(t)
	url := startNATS(t, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rx := newNATS(t, url)
	raw := connect(t, url)
	// Valid tensors go out on the same connection as the bad frames, so
	// NATS keeps their order.
	tx, err := NewNATS(raw)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReceiver(ctx, rx, subj.Act(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pub := func(f *tesserav1.Frame) {
		b, _ := proto.Marshal(f)
		if err := raw.Publish(subj.Act(1, 0), b); err != nil {
			t.Fatal(err)
		}
	}
	bad := []struct {
		name   string
		send   func()
		frames int64
	}{
		{"garbage bytes", func() { raw.Publish(subj.Act(1, 0), []byte("\xff\xfe not a protobuf")) }, 1},
		{"truncated protobuf", func() {
			b, _ := proto.Marshal(frame(act, f32, []int64{4}, 0, 1, make([]byte, 16)))
			raw.Publish(subj.Act(1, 0), b[:len(b)-3])
		}, 1},
		{"chunks=0", func() { pub(frame(act, f32, []int64{1}, 0, 0, make([]byte, 4))) }, 1},
		{"chunk index out of range", func() { pub(frame(act, f32, []int64{4}, 5, 2, make([]byte, 8))) }, 1},
		{"unknown dtype", func() { pub(frame(act, 77, []int64{4}, 0, 1, make([]byte, 16))) }, 1},
		{"shape/data mismatch", func() { pub(frame(act, f32, []int64{4}, 0, 1, make([]byte, 15))) }, 1},
		{"chunks disagree on shape", func() {
			f := frame(act, f32, []int64{4}, 0, 2, make([]byte, 8))
			f.StepId = 100
			pub(f)
			f.Chunk, f.Shape = 1, []int64{2, 2}
			pub(f)
		}, 2},
		{"chunk sent twice", func() {
			f := frame(act, f32, []int64{4}, 0, 2, make([]byte, 8))
			f.StepId = 101
			pub(f)
			pub(f)
		}, 2},
		{"chunks that do not add up", func() {
			f := frame(act, f32, []int64{4}, 0, 2, make([]byte, 4))
			f.StepId = 102
			pub(f)
			f.Chunk = 1
			pub(f)
		}, 2},
	}
	var want int64
	for i, b := range bad {
		b.send()
		want += b.frames
		// Valid traffic continues between the bad frames.
		data := randomBytes(100<<10, uint64(i)) // chunked
		meta := &tesserav1.Frame{PlanVersion: 7, StepId: uint64(i), Stage: 0, Kind: act, Dtype: tesserav1.DType_DTYPE_U8, Shape: []int64{100 << 10}}
		if err := SendTensor(ctx, tx, subj.Act(1, 0), meta, data); err != nil {
			t.Fatal(err)
		}
		got, err := r.Wait(ctx, KeyOf(meta))
		if err != nil {
			t.Fatalf("after %s: %v", b.name, err)
		}
		if string(got.Data) != string(data) {
			t.Fatalf("after %s: tensor differs", b.name)
		}
		if d := r.Dropped(); d != want {
			t.Errorf("after %s: dropped %d, want %d (%+v)", b.name, d, want, r.Stats())
		}
	}
	t.Logf("stats: %+v", r.Stats())
}

func TestStaleAndForget(t *testing.T) {
	checkGoroutines(t)
	tr := NewInProcess()
	defer tr.Close()
	ctx := context.Background()
	r, err := NewReceiver(ctx, tr, "x", Timeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Half a tensor, never completed.
	tr.Publish(ctx, "x", frame(act, f32, []int64{4}, 0, 2, make([]byte, 8)))
	time.Sleep(60 * time.Millisecond)
	// The next arrival sweeps it.
	ok := frame(act, f32, []int64{1}, 0, 1, make([]byte, 4))
	ok.StepId = 2
	tr.Publish(ctx, "x", ok)
	if s := r.Stats(); s.Stale != 1 {
		t.Errorf("stale %d, want 1 (%+v)", s.Stale, s)
	}
	// Forget drops the untaken tensor of step 2 and later frames of step 2.
	r.Forget(7, 3)
	tr.Publish(ctx, "x", ok)
	if s := r.Stats(); s.Stale != 3 {
		t.Errorf("stale %d, want 3 (%+v)", s.Stale, s)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(wctx, KeyOf(ok)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait for a forgotten tensor: %v", err)
	}
}

func TestMaxPending(t *testing.T) {
	tr := NewInProcess()
	defer tr.Close()
	ctx := context.Background()
	r, _ := NewReceiver(ctx, tr, "x", MaxPending(10))
	defer r.Close()
	tr.Publish(ctx, "x", frame(act, f32, []int64{2}, 0, 1, make([]byte, 8)))
	f := frame(act, f32, []int64{2}, 0, 1, make([]byte, 8))
	f.StepId = 9
	tr.Publish(ctx, "x", f)
	if s := r.Stats(); s.Overflow != 1 {
		t.Errorf("%+v", s)
	}
}

// TestDeadlineFreesEverything: a Wait and an AllReduce whose peer never
// answers return context.DeadlineExceeded, and closing leaves no goroutine.
func TestDeadlineFreesEverything(t *testing.T) {
	transports(t, func(t *testing.T, newT func() Transport) {
		checkGoroutines(t)
		tr := newT()
		r, err := NewReceiver(context.Background(), tr, subj.Act(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := r.Wait(ctx, Key{Plan: 7, Step: 1}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait: %v", err)
		}
		if _, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Next: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("deadline took %v", d)
		}
		r.Close()
		if _, err := r.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Next after Close: %v", err)
		}

		g, err := NewGroup(context.Background(), tr, subj, 0, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		buf := []float32{1, 2, 3}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel2()
		if err := g.AllReduce(ctx2, 1, 0, buf); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("AllReduce: %v", err)
		}
		if buf[0] != 1 || buf[2] != 3 {
			t.Errorf("buf changed on failure: %v", buf)
		}
		g.Close()

		// A subscription ends when its context does.
		sctx, scancel := context.WithCancel(context.Background())
		var got sync.WaitGroup
		sub, err := tr.Subscribe(sctx, "tessera.test.ctx", func(*tesserav1.Frame) { got.Done() })
		if err != nil {
			t.Fatal(err)
		}
		one := frame(act, f32, nil, 0, 1, make([]byte, 4))
		got.Add(1)
		tr.Publish(context.Background(), "tessera.test.ctx", one)
		got.Wait()
		scancel()
		time.Sleep(20 * time.Millisecond)
		tr.Publish(context.Background(), "tessera.test.ctx", one) // would panic the WaitGroup if delivered
		if n, ok := tr.(*NATS); ok {
			n.pub.Flush()
			time.Sleep(20 * time.Millisecond)
		}
		sub.Close()
	})
}

// TestAllReduce: 2 and 3 ranks, each on its own NATS connections (or
// in-process), over several reductions; every rank must get bit-identical
// sums within float32 rounding of the float64 reference.
func TestAllReduce(t *testing.T) {
	for _, ranks := range []int{2, 3} {
		for _, n := range []int{1, 4096, 40000} { // 40000 floats = 160 KB: chunked at 64 KiB
			t.Run(fmt.Sprintf("%dranks/%dfloats", ranks, n), func(t *testing.T) {
				transports(t, func(t *testing.T, newT func() Transport) {
					checkGoroutines(t)
					allReduce(t, newT, ranks, n)
				})
			})
		}
	}
}

func allReduce(t *testing.T, newT func() Transport, ranks, n int) {
	groups := make([]Reducer, ranks)
	for r := range groups {
		g, err := NewGroup(context.Background(), newT(), subj, 1, r, ranks)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		groups[r] = g
	}
	checkAllReduce(t, groups, n)
}

// checkAllReduce runs four reductions of n random floats (two per step,
// as in a decoder layer) on every rank at once and checks that all ranks
// get the same bits, close to the float64 sum, and dropped nothing.
func checkAllReduce(t *testing.T, groups []Reducer, n int) {
	t.Helper()
	ranks := len(groups)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const rounds = 4
	inputs := make([][][]float32, rounds) // [round][rank]
	results := make([][][]float32, rounds)
	rng := rand.New(rand.NewPCG(uint64(ranks), uint64(n)))
	for k := range inputs {
		inputs[k] = make([][]float32, ranks)
		results[k] = make([][]float32, ranks)
		for r := range inputs[k] {
			inputs[k][r] = make([]float32, n)
			for i := range inputs[k][r] {
				inputs[k][r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-2)))
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, ranks)
	for r := range groups {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for k := 0; k < rounds; k++ {
				buf := append([]float32(nil), inputs[k][r]...)
				if err := groups[r].AllReduce(ctx, uint64(k/2), k%2, buf); err != nil {
					errs <- fmt.Errorf("rank %d round %d: %w", r, k, err)
					return
				}
				results[k][r] = buf
			}
		}(r)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := 0; k < rounds; k++ {
		for i := 0; i < n; i++ {
			var ref, mag float64
			for r := 0; r < ranks; r++ {
				ref += float64(inputs[k][r][i])
				mag += math.Abs(float64(inputs[k][r][i]))
			}
			got := results[k][0][i]
			for r := 1; r < ranks; r++ {
				if math.Float32bits(results[k][r][i]) != math.Float32bits(got) {
					t.Fatalf("round %d [%d]: rank %d has %v, rank 0 %v", k, i, r, results[k][r][i], got)
				}
			}
			if d := math.Abs(float64(got) - ref); d > float64(ranks)*1.2e-7*mag+1e-30 {
				t.Fatalf("round %d [%d]: %v, float64 reference %v", k, i, got, ref)
			}
		}
	}
	for r, g := range groups {
		if d := g.Dropped(); d != 0 {
			t.Errorf("rank %d dropped %d", r, d)
		}
	}
}

func TestSingleRankAllReduceIsNoop(t *testing.T) {
	g, err := NewGroup(context.Background(), NewInProcess(), subj, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := []float32{1, 2}
	if err := g.AllReduce(context.Background(), 0, 0, buf); err != nil || buf[1] != 2 {
		t.Fatal(buf, err)
	}
	if _, err := NewGroup(context.Background(), NewInProcess(), subj, 0, 2, 2); !errors.Is(err, ErrInvalid) {
		t.Errorf("rank 2 of 2: %v", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Connect("nats://127.0.0.1:1")
	if !errors.Is(err, ErrUnreachable) || !errorsContain(err, "127.0.0.1:1", "pass --nats") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func errorsContain(err error, subs ...string) bool {
	for _, s := range subs {
		if !contains(err.Error(), s) {
			return false
		}
	}
	return true
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestClosedTransport(t *testing.T) {
	url := startNATS(t, 0)
	for _, tr := range []Transport{NewInProcess(), newNATS(t, url)} {
		tr.Close()
		if _, err := tr.Subscribe(context.Background(), "a", func(*tesserav1.Frame) {}); !errors.Is(err, ErrClosed) {
			t.Errorf("%T Subscribe after Close: %v", tr, err)
		}
		if _, ok := tr.(*InProcess); ok {
			if err := tr.Publish(context.Background(), "a", frame(act, f32, nil, 0, 1, make([]byte, 4))); !errors.Is(err, ErrClosed) {
				t.Errorf("Publish after Close: %v", err)
			}
		}
		if err := tr.Publish(context.Background(), "a.*", frame(act, f32, nil, 0, 1, make([]byte, 4))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%T Publish to a wildcard: %v", tr, err)
		}
	}
}
