package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc"

	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/model"
)

// apiFlags are the API's own flags on coordinator and local.
type apiFlags struct {
	key, keyFile string
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.key, "api-key", "", "require \"Authorization: Bearer KEY\" on /v1/ and the gRPC Inference service (prefer --api-key-file)")
	fs.StringVar(&a.keyFile, "api-key-file", "", "read the API key from this file (surrounding whitespace trimmed)")
}

// resolve returns the API key ("" for none).
func (a *apiFlags) resolve() (string, error) {
	if a.key != "" && a.keyFile != "" {
		return "", fmt.Errorf("%w: give --api-key or --api-key-file, not both", errUsage)
	}
	if a.keyFile == "" {
		return a.key, nil
	}
	raw, err := os.ReadFile(a.keyFile)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	key := strings.TrimSpace(string(raw))
	if key == "" {
		return "", fmt.Errorf("%w: --api-key-file %s is empty", errUsage, a.keyFile)
	}
	return key, nil
}

// apiServer builds the coordinator's API over its scheduler: the model's
// chat template, the key, and the metrics the scheduler's stepper feeds.
func apiServer(c coordinatorConfig, tok api.Tokenizer, sched *scheduler.Scheduler, metrics *api.Metrics, ready func() bool) (*api.Server, error) {
	chat, err := api.LoadChatTemplate(filepath.Join(c.model, "tokenizer_config.json"))
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{Model: c.modelName, Scheduler: sched, Tokenizer: tok, Chat: chat, Ready: ready,
		APIKey: c.apiKey, Metrics: metrics, Logger: c.log}), nil
}

// grpcServer is the coordinator's gRPC server with the Inference service
// (key-checked) registered.
func grpcServer(a *api.Server) *grpc.Server {
	g := grpc.NewServer(a.GRPCServerOptions()...)
	tesserav1.RegisterInferenceServer(g, a.GRPC())
	return g
}

// isEncoder reports a model the coordinator serves itself (embeddings and
// fill-mask) instead of planning it over workers: BERT is not a causal LM
// and does not shard.
func isEncoder(s *spec.Spec) bool { return s.Serving() == spec.Encoder }

// localEncoder runs an encoder model in this process for the API, one
// request at a time.
type localEncoder struct {
	mu     sync.Mutex
	enc    model.Encoder
	maskID int32
	max    int
}

func (e *localEncoder) Embed(ctx context.Context, ids []int32) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out, err := e.enc.Encode(ctx, model.EncoderInput{IDs: ids})
	if err != nil {
		return nil, err
	}
	return out.Mean(), nil
}

func (e *localEncoder) MaskedLogits(ctx context.Context, ids []int32, positions []int) ([][]float32, error) {
	mlm, ok := e.enc.(model.MaskedLM)
	if !ok {
		return nil, fmt.Errorf("%s has no masked-LM head", e.enc.Spec().Arch)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return mlm.MaskedLogits(ctx, model.EncoderInput{IDs: ids}, positions)
}

func (e *localEncoder) MaskID() int32  { return e.maskID }
func (e *localEncoder) MaxTokens() int { return e.max }

// startEncoderCoordinator serves an encoder model from this process:
// /v1/embeddings, /v1/fill-mask and the gRPC Embed/Tokenize. No cluster is
// involved (the workers are not needed).
func startEncoderCoordinator(ctx context.Context, c coordinatorConfig, s *spec.Spec, tok api.Tokenizer) (*proc, error) {
	m, err := model.Load(c.model)
	if err != nil {
		return nil, err
	}
	enc, ok := m.(model.Encoder)
	if !ok {
		return nil, fmt.Errorf("%s is not an encoder", s.Arch)
	}
	maskID, err := maskTokenID(c.model)
	if err != nil && !errors.Is(err, errUsage) {
		return nil, err
	}
	le := &localEncoder{enc: enc, maskID: int32(maskID), max: s.MaxPositions}
	if le.max <= 0 {
		le.max = 512
	}
	a := api.New(api.Config{Model: c.modelName, Tokenizer: tok, Encoder: le, APIKey: c.apiKey, Logger: c.log})
	srv, err := listenAPI(c, a)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	srv.serve(&wg, c)
	c.log.Info("serving an encoder model in the coordinator (embeddings, fill-mask)", "arch", s.Arch)
	stop := func() {
		srv.shutdown()
		wg.Wait()
	}
	return &proc{stop: sync.OnceFunc(stop), addr: srv.ln.Addr().String()}, nil
}
