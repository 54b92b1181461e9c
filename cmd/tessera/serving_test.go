package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"

	"github.com/tessera-llm/tessera/local"
)

// servingCluster is one in-process `tessera local` (embedded etcd and
// NATS, two workers) shared by the serving tests.
var (
	servingOnce sync.Once
	servingAPI  string
	servingErr  error
)

func localAPI(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a local cluster")
	}
	servingOnce.Do(func() {
		var sf servingFlags
		var wf workerFlags
		fs := newFlagSet("local", "", io.Discard)
		sf.register(fs, "127.0.0.1:0")
		wf.register(fs)
		if servingErr = fs.Parse([]string{"--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--cache-tokens", "16384"}); servingErr != nil {
			return
		}
		o, err := localOptions(sf, wf, 2, "", io.Discard)
		if servingErr = err; err != nil {
			return
		}
		lc, err := local.Start(context.Background(), o)
		if servingErr = err; err != nil {
			return
		}
		servingAPI = "http://" + lc.API
		deadline := time.Now().Add(30 * time.Second)
		for status(servingAPI+"/ready") != 200 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if servingErr != nil {
		t.Fatal(servingErr)
	}
	return servingAPI
}

// The official OpenAI Go client works against the server, streaming and
// not, for completions and chat.
func TestOpenAIClient(t *testing.T) {
	api := localAPI(t)
	client := openai.NewClient(option.WithBaseURL(api+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	prompt := "Parameters\n----------\n"
	c, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model:       "docbloom-3m",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens:   openai.Int(24),
		Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Choices) != 1 || !strings.Contains(c.Choices[0].Text, "array") || c.Usage.CompletionTokens == 0 {
		t.Fatalf("completion %+v", c)
	}
	stream := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
		Model:       "docbloom-3m",
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
		MaxTokens:   openai.Int(24),
		Temperature: openai.Float(0),
	})
	var sb strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			sb.WriteString(ch.Text)
		}
	}
	if err := stream.Err(); err != nil || sb.String() != c.Choices[0].Text {
		t.Fatalf("streamed %q (%v), want %q", sb.String(), err, c.Choices[0].Text)
	}

	msgs := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Write numpy docstrings."), openai.UserMessage("def mean(x):")}
	cc, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "docbloom-3m", Messages: msgs,
		MaxTokens: openai.Int(16), Temperature: openai.Float(0), Seed: openai.Int(1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" || cc.Choices[0].FinishReason != "length" {
		t.Fatalf("chat %+v", cc)
	}
	cs := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "docbloom-3m", Messages: msgs,
		MaxTokens: openai.Int(16), Temperature: openai.Float(0),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var acc openai.ChatCompletionAccumulator
	for cs.Next() {
		acc.AddChunk(cs.Current())
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != cc.Choices[0].Message.Content || acc.Usage.CompletionTokens != 16 {
		t.Fatalf("streamed chat %q (usage %+v), want %q", acc.Choices[0].Message.Content, acc.Usage, cc.Choices[0].Message.Content)
	}
	// An unknown model is the client's 404.
	_, err = client.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-4",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}})
	var apiErr *openai.Error
	if !errorsAs(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("unknown model: %v", err)
	}
}

func errorsAs(err error, target **openai.Error) bool {
	for err != nil {
		if e, ok := err.(*openai.Error); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// Every curl example in README.md runs against a local cluster and
// answers 200 with text.
func TestReadmeCurlExamples(t *testing.T) {
	api := localAPI(t)
	raw, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, then take each curl command's URL path and -d body.
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	re := regexp.MustCompile(`curl [^\n]*?(?:localhost|127\.0\.0\.1):\d+(/[^\s']+)[^\n]*?-d '([^']*)'`)
	found := re.FindAllStringSubmatch(text, -1)
	if len(found) == 0 {
		t.Fatal("README.md has no curl example")
	}
	for _, m := range found {
		// The shell passes \n through; in JSON it is an escape.
		path, body := m[1], m[2]
		resp, err := http.Post(api+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"text"`)) && !bytes.Contains(out, []byte(`"content"`)) && !bytes.Contains(out, []byte(`"embedding"`)) {
			t.Errorf("README example POST %s %s: %d %s", path, body, resp.StatusCode, out)
		}
	}
}

// 64 concurrent streaming requests of mixed lengths on a local cluster:
// all complete, each greedy output equals the same request alone, no
// goroutine leaks, and every KV block is free afterwards.
func TestConcurrentStreamsOnLocalCluster(t *testing.T) {
	api := localAPI(t)
	opt := goleak.IgnoreCurrent()
	const n = 64
	prompts := make([][]int32, n)
	lens := make([]int, n)
	want := make([][]int32, n)
	for i := range prompts {
		for j := range 3 + i%13 {
			prompts[i] = append(prompts[i], int32(100+(i*37+j*11)%3000))
		}
		lens[i] = 8 + (i*13)%56
		want[i] = complete(t, api, greedyBody(prompts[i], lens[i])).Choices[0].TokenIDs
	}
	got := make([][]int32, n)
	started := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range prompts {
		wg.Go(func() { got[i] = streamIDs(t, api, prompts[i], lens[i], started) })
	}
	wg.Wait()
	for i := range got {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("request %d batched with 63 others:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, opt)
	// Blocks are released when the scheduler retires sequences; wait for
	// the gauge to settle.
	deadline := time.Now().Add(5 * time.Second)
	used := -1.0
	for time.Now().Before(deadline) {
		if used = metric(t, api, "tessera_kv_blocks_used"); used == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if used != 0 {
		t.Errorf("%v KV blocks still used after every request ended", used)
	}
}
