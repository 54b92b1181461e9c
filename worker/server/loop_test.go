package server

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tessera-llm/tessera/kernels/cpu"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/transport"
)

// loadStream is LoadShard's server stream, in process.
type loadStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s loadStream) Context() context.Context           { return s.ctx }
func (s loadStream) Send(*tesserav1.LoadProgress) error { return nil }

// A step whose activations never come (lost in a NATS restart) fails on
// the worker after the coordinator's timeout, which the step carries, not
// after the worker's own longer one: the stage must be free again by the
// time the coordinator replays, or every replay queues behind the lost
// step until the coordinator gives up.
func TestStepWaitsNoLongerThanTheCoordinator(t *testing.T) {
	ns, url, err := transport.EmbeddedNATS(&server.Options{Host: "127.0.0.1", Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := transport.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tr, err := transport.NewNATS(nc)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "testdata", "golden", "bloom")
	sp, err := spec.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(sp, []plan.Worker{{ID: "w0"}, {ID: "w1"}}, plan.WithShape(2, 1), plan.WithVersion(1))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	// Stage 1's worker, whose own step timeout is far longer than the
	// coordinator's.
	srv := New(Config{Cluster: "c", ID: "w1", Backend: cpu.New(), StepTimeout: time.Minute}, tr)
	defer srv.Close()
	st := p.Stages[1]
	r := st.Ranks[0]
	rng := func(v [2]int) *tesserav1.Range { return &tesserav1.Range{Start: int32(v[0]), End: int32(v[1])} }
	sh := &tesserav1.Shard{PlanVersion: 1, Cluster: "c", ModelDir: dir, Stage: 1, Rank: 0, Stages: 2, Ranks: 1,
		Layers: rng(st.Layers), Heads: rng(r.Heads), KvHeads: rng(r.KVHeads), Mlp: rng(r.MLP), Vocab: rng(r.Vocab),
		AlibiSlopes: r.ALiBiSlopes, KvMap: r.KVMap, CacheTokens: 256, BlockSize: 16, PlanJson: string(raw)}
	if err := srv.LoadShard(&tesserav1.LoadShardRequest{Shard: sh}, loadStream{ctx: context.Background()}); err != nil {
		t.Fatal(err)
	}
	subj, err := transport.NewSubjects("c", 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := transport.NewReceiver(ctx, tr, subj.Result(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer results.Close()

	step := &tesserav1.Step{PlanVersion: 1, StepId: 1, Tokens: []int32{5, 6}, TopK: 1, TimeoutMs: 300,
		Spans: []*tesserav1.SeqSpan{{SeqId: 1, Tokens: 2, BlockTable: []int32{0}}}}
	sent := time.Now()
	meta := &tesserav1.Frame{PlanVersion: 1, StepId: 1, Kind: tesserav1.FrameKind_FRAME_KIND_STEP}
	if err := transport.SendProto(ctx, tr, subj.Step(), meta, step); err != nil {
		t.Fatal(err)
	}
	got, err := results.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var res tesserav1.StepResult
	if err := proto.Unmarshal(got.Data, &res); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(sent)
	if !strings.Contains(res.Error, errNoActivations.Error()) {
		t.Errorf("result %q, want the missing activations", res.Error)
	}
	// The worker's own timeout is a minute; the step asked for 300 ms.
	if waited > 10*time.Second {
		t.Errorf("the worker answered after %v, want about the step's 300ms", waited)
	}
}
