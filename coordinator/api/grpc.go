package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// GRPC is the Inference service: the HTTP API's generation, embeddings
// and tokenizer over gRPC, sharing its scheduler, limits and API key.
type GRPC struct {
	tesserav1.UnimplementedInferenceServer
	s *Server
}

// GRPC returns the Inference service of s; register it with
// tesserav1.RegisterInferenceServer on a server built with
// GRPCServerOptions.
func (s *Server) GRPC() *GRPC { return &GRPC{s: s} }

// GRPCServerOptions are the interceptors that check the API key on the
// Inference service's calls ("authorization: Bearer <key>" metadata).
// Other services on the same server are left alone.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	check := func(ctx context.Context, method string) error {
		if s.cfg.APIKey == "" || !strings.HasPrefix(method, "/tessera.v1.Inference/") {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		header := ""
		if v := md.Get("authorization"); len(v) > 0 {
			header = v[0]
		}
		return grpcError(s.authorize(header))
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// grpcError maps the API's errors onto gRPC codes.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch statusOf(err) {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		code = codes.InvalidArgument
	case http.StatusUnauthorized:
		code = codes.Unauthenticated
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	case 499:
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func (g *GRPC) counted(method string, err error) error {
	st := http.StatusOK
	if err != nil {
		st = statusOf(err)
	}
	g.s.metrics.requests.WithLabelValues("grpc:"+method, httpStatus(st)).Inc()
	return grpcError(err)
}

func httpStatus(st int) string { return strconv.Itoa(st) }

// Generate streams tokens for each choice as they are produced.
func (g *GRPC) Generate(req *tesserav1.GenerateRequest, stream grpc.ServerStreamingServer[tesserav1.GenerateResponse]) error {
	return g.counted("Generate", g.generate(req, stream))
}

func (g *GRPC) generate(req *tesserav1.GenerateRequest, stream grpc.ServerStreamingServer[tesserav1.GenerateResponse]) error {
	s := g.s
	if !s.cfg.Ready() {
		return errNotReady
	}
	if err := s.checkModel(req.Model); err != nil {
		return err
	}
	p := &params{Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed, Stop: req.Stop, StopIDs: req.StopTokenIds,
		RepetitionPenalty: req.RepetitionPenalty, IgnoreEOS: req.IgnoreEos, MaxTokens: optionalInt(req.MaxTokens)}
	p.MinTokens, p.TopK, p.N = nonZero(int(req.MinTokens)), nonZero(int(req.TopK)), nonZero(int(req.N))
	p.MinP, p.PresencePenalty, p.FrequencyPenalty = nonZero(req.MinP), nonZero(req.PresencePenalty), nonZero(req.FrequencyPenalty)
	if req.Logprobs {
		top := int(req.TopLogprobs)
		p.Logprobs = &top
	}
	if _, err := s.generator(); err != nil {
		return err
	}
	var prompt []int32
	switch {
	case len(req.PromptIds) > 0 && req.Prompt != "":
		return badRequest("prompt", "give prompt or prompt_ids, not both")
	case len(req.PromptIds) > 0:
		prompt = req.PromptIds
	case s.cfg.Tokenizer == nil || req.Prompt == "":
		return badRequest("prompt", "prompt_ids is required (or prompt, with a tokenizer)")
	default:
		ids, err := s.encodeText(stream.Context(), req.Prompt, true, s.promptLimit(), "prompt")
		if err != nil {
			return err
		}
		prompt = ids
	}
	gr, err := s.build(p, [][]int32{prompt}, 16, maxTopLogprobs, "top_logprobs")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var sendErr error
	var finals []*tesserav1.GenerateResponse
	emit := func(d delta) {
		mu.Lock()
		defer mu.Unlock()
		if d.err != nil {
			if sendErr == nil {
				sendErr = d.err
			}
			return
		}
		m := &tesserav1.GenerateResponse{Index: int32(d.seq), Text: d.text, FinishReason: d.finish}
		for _, t := range d.tokens {
			gt := &tesserav1.GeneratedToken{Id: t.ID}
			if gr.logprobs >= 0 {
				gt.Logprob = t.Logprob
				for _, c := range t.Top {
					gt.Top = append(gt.Top, &tesserav1.TokenLogprob{Id: c.ID, Logprob: c.Logprob})
				}
			}
			m.Tokens = append(m.Tokens, gt)
		}
		if d.finish != "" {
			finals = append(finals, m)
			return
		}
		if sendErr == nil {
			sendErr = stream.Send(m)
		}
	}
	seqs, err := s.generate(stream.Context(), gr, emit)
	if err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	completion := 0
	for _, q := range seqs {
		completion += len(q.tokens)
	}
	for i, m := range finals {
		if i == len(finals)-1 {
			m.Usage = &tesserav1.Usage{PromptTokens: int32(len(prompt)), CompletionTokens: int32(completion)}
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// Embed runs the encoder on each input.
func (g *GRPC) Embed(ctx context.Context, req *tesserav1.EmbedRequest) (*tesserav1.EmbedResponse, error) {
	resp, err := g.embed(ctx, req)
	return resp, g.counted("Embed", err)
}

func (g *GRPC) embed(ctx context.Context, req *tesserav1.EmbedRequest) (*tesserav1.EmbedResponse, error) {
	s := g.s
	if err := s.checkModel(req.Model); err != nil {
		return nil, err
	}
	if s.cfg.Encoder == nil {
		return nil, badRequest("model", "model %q is not an encoder: Embed needs one (bert)", s.cfg.Model)
	}
	var inputs [][]int32
	for _, t := range req.Input {
		ids, err := s.encodeText(ctx, t, true, s.cfg.Encoder.MaxTokens(), "input")
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, ids)
	}
	for _, t := range req.InputIds {
		inputs = append(inputs, t.Ids)
	}
	resp := &tesserav1.EmbedResponse{}
	for i, ids := range inputs {
		if len(ids) == 0 || len(ids) > s.cfg.Encoder.MaxTokens() {
			return nil, badRequest("input", "input %d has %d tokens; want 1 to %d", i, len(ids), s.cfg.Encoder.MaxTokens())
		}
		vec, err := s.cfg.Encoder.Embed(ctx, ids)
		if err != nil {
			return nil, err
		}
		resp.Data = append(resp.Data, &tesserav1.Embedding{Values: vec})
		resp.PromptTokens += int32(len(ids))
	}
	if len(resp.Data) == 0 {
		return nil, badRequest("input", "input or input_ids is required")
	}
	return resp, nil
}

// Tokenize encodes text with the served model's tokenizer.
func (g *GRPC) Tokenize(ctx context.Context, req *tesserav1.TokenizeRequest) (*tesserav1.TokenizeResponse, error) {
	resp, err := g.tokenize(ctx, req)
	return resp, g.counted("Tokenize", err)
}

// Tokenize is admitted like a prompt (bounded bytes, bounded concurrent
// tokenizing, at most a context's worth of tokens): a text the model
// could never take is not worth tokenizing in full.
func (g *GRPC) tokenize(ctx context.Context, req *tesserav1.TokenizeRequest) (*tesserav1.TokenizeResponse, error) {
	if err := g.s.checkModel(req.Model); err != nil {
		return nil, err
	}
	if g.s.cfg.Tokenizer == nil {
		return nil, badRequest("model", "this model has no tokenizer.json")
	}
	ids, err := g.s.encodeText(ctx, req.Text, req.AddSpecialTokens, g.s.promptLimit(), "text")
	if err != nil {
		return nil, err
	}
	return &tesserav1.TokenizeResponse{Ids: ids}, nil
}

// optionalInt is an optional proto field as the JSON API's optional int.
func optionalInt(v *int32) *int {
	if v == nil {
		return nil
	}
	n := int(*v)
	return &n
}

// nonZero is nil for v's zero value (a proto3 field left unset) and &v
// otherwise, the JSON API's "absent" for an optional parameter.
func nonZero[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}
