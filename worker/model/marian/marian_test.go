package marian_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/marian"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func load(t *testing.T, opts ...model.Option) (model.Seq2SeqLM, modeltest.Seq2SeqGolden) {
	t.Helper()
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/transformer-marian")
	var g modeltest.Seq2SeqGolden
	s2s, ok := modeltest.Load(t, dir, &g, opts...).(model.Seq2SeqLM)
	if !ok {
		t.Fatal("marian is not a model.Seq2SeqLM")
	}
	return s2s, g
}

func TestGoldenMarian(t *testing.T) {
	for name, opts := range map[string][]model.Option{"blocks16": nil, "blocks4": {model.WithCache(64, 4)}} {
		t.Run(name, func(t *testing.T) { checkGolden(t, opts...) })
	}
}

func checkGolden(t *testing.T, opts ...model.Option) {
	m, g := load(t, opts...)
	gen := engine.New(m)
	ctx := context.Background()
	for i, c := range g.Cases {
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			enc, err := m.(model.Encoder).Encode(ctx, model.EncoderInput{IDs: c.InputIDs})
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "encoder_last_hidden_state", enc.Hidden, c.EncoderLastHiddenState)

			dec := c.GreedyIDs[:len(c.GreedyIDs)-1]
			rows, err := gen.DecoderLogits(ctx, c.InputIDs, dec)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "decoder_logits", rows, c.DecoderLogits)

			rows, err = gen.DecoderLogits(ctx, c.InputIDs, c.ProbeDecoderIDs)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "probe_decoder_logits", rows, c.ProbeDecoderLogits)

			// Greedy decoding through the KV cache; the last step's logits
			// must match the uncached decoder_logits row.
			want := c.GreedyIDs[1:]
			var last []float32
			ids, err := gen.Translate(ctx, c.InputIDs, len(want), engine.SamplerFunc(topk.Argmax), nil,
				func(s engine.Step) {
					if s.Index == len(want)-1 {
						last = append(last[:0], s.Logits...)
					}
				})
			if err != nil {
				t.Fatal(err)
			}
			if c.GreedyIDs[0] != m.DecoderStart() {
				t.Errorf("golden starts with %d, decoder_start_token_id is %d", c.GreedyIDs[0], m.DecoderStart())
			}
			if !slices.Equal(ids, want) {
				t.Errorf("greedy ids\n got %v\nwant %v", ids, want)
			}
			modeltest.CheckRows(t, "last cached step", [][]float32{last}, c.DecoderLogits[len(c.DecoderLogits)-1:])
		})
	}
	if free, all := m.Cache().FreeBlocks(), m.Cache().Blocks(); free != all {
		t.Errorf("decoder cache: %d of %d blocks free after the requests", free, all)
	}
}

func TestDecoderNeedsSource(t *testing.T) {
	m, _ := load(t)
	logits := m.Backend().Alloc(1, m.Spec().Vocab)
	var seq kvcache.Seq
	batch := model.Batch{Tokens: []int32{m.DecoderStart()}, Spans: []model.Span{{Seq: &seq, N: 1}}}
	if err := m.Forward(context.Background(), &batch, logits); !errors.Is(err, model.ErrBadBatch) {
		t.Fatalf("err = %v, want ErrBadBatch", err)
	}
	if err := m.EncodeSource(context.Background(), &seq, nil); !errors.Is(err, model.ErrBadBatch) {
		t.Fatalf("empty source: err = %v, want ErrBadBatch", err)
	}
	if err := m.EncodeSource(context.Background(), &seq, []int32{40, 512}); !errors.Is(err, model.ErrBadBatch) {
		t.Fatalf("source id outside vocab: err = %v, want ErrBadBatch", err)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	m, _ := load(t)
	var seq kvcache.Seq
	if err := m.EncodeSource(context.Background(), &seq, []int32{40, 41, 42, 2}); err != nil {
		t.Fatal(err)
	}
	defer m.ReleaseSource(&seq)
	modeltest.CheckDecodeAllocs(t, m, &seq, []int32{m.DecoderStart(), 150})
}
