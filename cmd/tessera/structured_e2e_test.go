package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	oaishared "github.com/openai/openai-go/v3/shared"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The official Go client against `tessera local` with two workers sharing
// every layer (pp=1, tp=2, so the vocabulary is split too) and the bundled
// model, which writes docstrings, never JSON: whatever comes out valid
// does so because the constraint made it. One cluster serves every
// subtest.
func TestOpenAIClientStructured(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local cluster")
	}
	addr := freeAddr(t)
	spawn(t, "local", "local", "--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--workers", "2", "--plan", "pp=1,tp=2",
		"--listen", addr, "--cache-tokens", "4096")
	api := "http://" + addr
	waitStatus(t, api+"/ready", 200, 60*time.Second)
	client := openai.NewClient(option.WithBaseURL(api+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const model = "docbloom-3m"
	input := responses.ResponseNewParamsInputUnion{OfString: openai.String("Parameters\n----------\n")}

	var plain string
	t.Run("responses", func(t *testing.T) {
		r, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: model, Input: input,
			Instructions: openai.String("Document the function."), MaxOutputTokens: openai.Int(24), Temperature: openai.Float(0)})
		if err != nil {
			t.Fatal(err)
		}
		plain = r.OutputText()
		if r.Object != "response" || plain == "" || r.Usage.OutputTokens != 24 || r.Usage.InputTokens == 0 || r.Status != responses.ResponseStatusIncomplete {
			t.Fatalf("response %+v", r)
		}
	})

	t.Run("responses streamed", func(t *testing.T) {
		stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: model, Input: input,
			Instructions: openai.String("Document the function."), MaxOutputTokens: openai.Int(24), Temperature: openai.Float(0)})
		var deltas strings.Builder
		var kinds []string
		var final responses.Response
		for stream.Next() {
			ev := stream.Current()
			kinds = append(kinds, ev.Type)
			switch ev.Type {
			case "response.output_text.delta":
				deltas.WriteString(ev.Delta)
			case "response.completed", "response.incomplete":
				final = ev.Response
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if kinds[0] != "response.created" || !slices.Contains(kinds, "response.output_text.done") || kinds[len(kinds)-1] != "response.incomplete" {
			t.Errorf("events %v", kinds)
		}
		if deltas.String() == "" || deltas.String() != final.OutputText() || deltas.String() != plain || final.Usage.OutputTokens != 24 {
			t.Fatalf("deltas %q, final %q (usage %+v), unstreamed %q", deltas.String(), final.OutputText(), final.Usage, plain)
		}
	})

	t.Run("json_schema on chat", func(t *testing.T) {
		schema := map[string]any{"type": "object", "properties": map[string]any{
			"name": map[string]any{"type": "string", "maxLength": 10}, "kind": map[string]any{"enum": []string{"array", "scalar"}},
			"ndim": map[string]any{"type": "integer"}}, "required": []string{"name", "kind"}, "additionalProperties": false}
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(96), Temperature: openai.Float(0),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe x.")},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &oaishared.ResponseFormatJSONSchemaParam{
				JSONSchema: oaishared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "param", Schema: schema, Strict: openai.Bool(true)}}}})
		if err != nil {
			t.Fatal(err)
		}
		out := c.Choices[0].Message.Content
		t.Logf("json_schema output: %s", out)
		if c.Choices[0].FinishReason != "stop" {
			t.Fatalf("finish %q: %q", c.Choices[0].FinishReason, out)
		}
		raw, _ := json.Marshal(schema)
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		sc := jsonschema.NewCompiler()
		doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err := sc.AddResource("param.json", doc); err != nil {
			t.Fatal(err)
		}
		compiled, err := sc.Compile("param.json")
		if err != nil {
			t.Fatal(err)
		}
		if err := compiled.Validate(inst); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
	})

	t.Run("required tool call", func(t *testing.T) {
		type weatherArgs struct {
			City string `json:"city"`
			Unit string `json:"unit"`
		}
		params := openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(96), Temperature: openai.Float(0),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Oslo?")},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(oaishared.FunctionDefinitionParam{
				Name: "get_weather", Description: openai.String("Current weather in a city."),
				Parameters: oaishared.FunctionParameters{"type": "object", "properties": map[string]any{
					"city": map[string]any{"type": "string", "maxLength": 12}, "unit": map[string]any{"enum": []string{"celsius", "fahrenheit"}}},
					"required": []string{"city", "unit"}, "additionalProperties": false}})},
			ToolChoice:        openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
			ParallelToolCalls: openai.Bool(false)}
		c, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		ch := c.Choices[0]
		if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 {
			t.Fatalf("choice %+v", ch)
		}
		call := ch.Message.ToolCalls[0]
		t.Logf("tool call: %s(%s)", call.Function.Name, call.Function.Arguments)
		dec := json.NewDecoder(strings.NewReader(call.Function.Arguments))
		dec.DisallowUnknownFields()
		var args weatherArgs
		if err := dec.Decode(&args); err != nil || call.Function.Name != "get_weather" || !strings.HasPrefix(call.ID, "call_") ||
			(args.Unit != "celsius" && args.Unit != "fahrenheit") || len(args.City) > 12 {
			t.Fatalf("call %+v: %+v (%v)", call, args, err)
		}
		// Streamed, the client's accumulator puts the same call together
		// from OpenAI-shaped tool-call deltas.
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0]; got.FinishReason != "tool_calls" || len(got.Message.ToolCalls) != 1 ||
			got.Message.ToolCalls[0].Function.Name != "get_weather" || got.Message.ToolCalls[0].Function.Arguments != call.Function.Arguments {
			t.Fatalf("streamed %+v, want the call %+v", got, call)
		}
	})

	t.Run("guided_choice", func(t *testing.T) {
		choices := []string{"array_like", "ndarray", "scalar"}
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(16), Temperature: openai.Float(0.8),
			Seed: openai.Int(3), Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("The type of x?")}},
			option.WithJSONSet("guided_choice", choices))
		if err != nil {
			t.Fatal(err)
		}
		if out := c.Choices[0].Message.Content; !slices.Contains(choices, out) || c.Choices[0].FinishReason != "stop" {
			t.Fatalf("%q (finish %q) is not one of %v", out, c.Choices[0].FinishReason, choices)
		}
	})
}
