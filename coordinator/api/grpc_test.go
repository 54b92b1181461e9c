package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// startGRPC serves ts's Inference service on loopback.
func startGRPC(t *testing.T, ts *testServer) tesserav1.InferenceClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ts.api.GRPCServerOptions()...)
	tesserav1.RegisterInferenceServer(g, ts.api.GRPC())
	go g.Serve(ln)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); g.Stop() })
	return tesserav1.NewInferenceClient(cc)
}

// Generate streams the same tokens and text as the HTTP API.
func TestGRPCGenerateMatchesHTTP(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.APIKey = "k" })
	client := startGRPC(t, ts)
	prompt := "Returns\n-------\n"
	_, body := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 20, "temperature": 0, "ignore_eos": true, "return_token_ids": true},
		"Authorization", "Bearer k")
	wantIDs, wantText := ints(choices(body)[0]["token_ids"]), text0(body)

	if _, err := client.Tokenize(context.Background(), &tesserav1.TokenizeRequest{Text: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no key: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer k")
	zero, twenty := 0.0, int32(20)
	st, err := client.Generate(ctx, &tesserav1.GenerateRequest{Prompt: prompt, MaxTokens: &twenty, Temperature: &zero, IgnoreEos: true, Logprobs: true, TopLogprobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	text, finish := "", ""
	var usage *tesserav1.Usage
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range m.Tokens {
			ids = append(ids, tok.Id)
			if tok.Logprob > 0 || len(tok.Top) == 0 {
				t.Fatalf("token logprobs %v", tok)
			}
		}
		text += m.Text
		if m.FinishReason != "" {
			finish, usage = m.FinishReason, m.Usage
		}
	}
	if fmt.Sprint(ids) != fmt.Sprint(wantIDs) || text != wantText || finish != "length" || usage.GetCompletionTokens() != 20 {
		t.Fatalf("gRPC %v %q %s %v\nHTTP %v %q", ids, text, finish, usage, wantIDs, wantText)
	}
	tok, err := client.Tokenize(ctx, &tesserav1.TokenizeRequest{Text: prompt, AddSpecialTokens: true})
	if err != nil || len(tok.Ids) == 0 {
		t.Fatalf("Tokenize: %v %v", tok, err)
	}
	// Tokenize is admitted like a prompt: a text that cannot fit the
	// context is refused, by bytes or by tokens, naming the field.
	limit := ts.api.promptLimit()
	for _, text := range []string{strings.Repeat("a", limit*maxBytesPerToken+1), strings.Repeat("a b ", limit)} {
		if _, err := client.Tokenize(ctx, &tesserav1.TokenizeRequest{Text: text}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "text") {
			t.Fatalf("Tokenize of %d bytes over a %d-token context: %v", len(text), limit, err)
		}
	}
	// Errors map onto codes.
	bad := -1.0
	st, _ = client.Generate(ctx, &tesserav1.GenerateRequest{Prompt: "a", Temperature: &bad})
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("temperature -1: %v", err)
	}
	if _, err := client.Embed(ctx, &tesserav1.EmbedRequest{Input: []string{"a"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Embed on a causal model: %v", err)
	}
}
