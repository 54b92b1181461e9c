package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

// DefaultChatTemplate is used when the model's tokenizer_config.json has
// no chat_template. Each message is rendered as "<role>: <content>" on its
// own lines, a blank line between messages, and the generation prompt is
// "assistant:". Tools, when given, come first, one JSON function per line;
// an assistant's calls follow its content as Hermes-style
// <tool_call>{"name", "arguments"}</tool_call> lines, the format read back
// from output. It uses no special tokens, so it suits any tokenizer.
const DefaultChatTemplate = `{%- if tools -%}
tools:
{% for tool in tools %}{{ tool['function'] | tojson }}
{% endfor %}

{% endif -%}
{%- for message in messages -%}
{{ message['role'] }}: {{ message['content'] | trim }}
{%- for call in message['tool_calls'] or [] %}

<tool_call>{"name": {{ call['function']['name'] | tojson }}, "arguments": {{ call['function']['arguments'] | tojson }}}</tool_call>
{%- endfor %}


{% endfor -%}
{%- if add_generation_prompt -%}
assistant:
{%- endif -%}`

// ChatTemplate renders chat messages into a prompt with a Jinja template,
// as Hugging Face's apply_chat_template does (trim_blocks and
// lstrip_blocks on; raise_exception and strftime_now available).
type ChatTemplate struct {
	tpl      *exec.Template
	mu       sync.Mutex
	bos, eos string
}

// ErrTemplate marks messages a template refused with raise_exception: a
// client error, since the messages drove it there.
var ErrTemplate = errors.New("chat template")

// ErrTemplateBroken marks a template that failed by itself (a call to an
// undefined function, a type error): a server fault. NewChatTemplate
// catches what a sample conversation reaches.
var ErrTemplateBroken = errors.New("chat template is broken")

// undefinedCall reports gonja's errors for a function or filter the
// template names but nobody defines: the template's fault, whatever the
// messages. (gonja does not type its errors; these are its words.)
func undefinedCall(err error) bool {
	m := err.Error()
	return (strings.Contains(m, "is not callable") && !strings.Contains(m, "invalid call to method")) ||
		(strings.Contains(m, "filter '") && strings.Contains(m, "' not found"))
}

// sampleChat is the conversation NewChatTemplate renders to find a
// broken template at load rather than on every request.
var sampleChat = []map[string]any{
	{"role": "system", "content": "s"},
	{"role": "user", "content": "u"},
	{"role": "assistant", "content": "a"},
	{"role": "user", "content": "u"},
}

// NewChatTemplate parses a Jinja chat template; bos and eos are the
// values of bos_token and eos_token inside it. A template that fails on a
// sample conversation by itself is refused here, at load.
func NewChatTemplate(source, bos, eos string) (*ChatTemplate, error) {
	c, err := parseChatTemplate(source, bos, eos)
	if err != nil {
		return nil, err
	}
	for _, addGen := range []bool{true, false} {
		if _, err := c.Render(sampleChat, addGen); errors.Is(err, ErrTemplateBroken) {
			return nil, err
		}
	}
	return c, nil
}

func parseChatTemplate(source, bos, eos string) (*ChatTemplate, error) {
	cfg := gonja.DefaultConfig.Inherit()
	cfg.TrimBlocks, cfg.LeftStripBlocks = true, true
	cfg.KeepTrailingNewline = false
	loader, err := loaders.NewFileSystemLoader("")
	if err != nil {
		return nil, err
	}
	shifted, err := loaders.NewShiftedLoader("chat_template", strings.NewReader(source), loader)
	if err != nil {
		return nil, err
	}
	tpl, err := exec.NewTemplate("chat_template", cfg, shifted, chatEnvironment)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing: %v", ErrTemplateBroken, err)
	}
	return &ChatTemplate{tpl: tpl, bos: bos, eos: eos}, nil
}

// ChatInput is one apply_chat_template call. Messages and Tools are JSON in
// OpenAI's shapes (tool_calls, tool_call_id and the rest pass through to
// the template); objects keep their key order, which templates show through
// tojson and items(). Vars is a JSON object of further template variables
// (Llama 3.1's date_string or tools_in_user_message, say).
type ChatInput struct {
	Messages            json.RawMessage
	Tools               json.RawMessage
	Vars                json.RawMessage
	AddGenerationPrompt bool
}

// Render applies the template to messages (each a map with at least role
// and content).
func (c *ChatTemplate) Render(messages []map[string]any, addGenerationPrompt bool) (string, error) {
	raw, err := json.Marshal(messages)
	if err != nil {
		return "", fmt.Errorf("%w: messages: %v", ErrTemplate, err)
	}
	return c.RenderChat(ChatInput{Messages: raw, AddGenerationPrompt: addGenerationPrompt})
}

// RenderChat applies the template to in, as transformers'
// apply_chat_template does.
func (c *ChatTemplate) RenderChat(in ChatInput) (string, error) {
	vars := map[string]any{}
	if len(in.Vars) > 0 {
		v, err := decodeJinja(in.Vars)
		d, ok := v.(*exec.Dict)
		if err != nil || !ok {
			return "", fmt.Errorf("%w: template variables must be a JSON object", ErrTemplate)
		}
		for _, p := range d.Pairs {
			vars[p.Key.String()] = p.Value.Interface()
		}
	}
	messages, err := decodeJinja(in.Messages)
	if err != nil {
		return "", fmt.Errorf("%w: messages: %v", ErrTemplate, err)
	}
	vars["messages"] = messages
	if present(in.Tools) {
		if vars["tools"], err = decodeJinja(in.Tools); err != nil {
			return "", fmt.Errorf("%w: tools: %v", ErrTemplate, err)
		}
	}
	vars["add_generation_prompt"] = in.AddGenerationPrompt
	vars["bos_token"] = c.bos
	vars["eos_token"] = c.eos
	// gonja does not wrap a function's error: remember it to tell a
	// raise_exception from a broken template.
	var raised error
	vars["raise_exception"] = func(msg string) (string, error) {
		raised = fmt.Errorf("%w: %s", ErrTemplate, msg)
		return "", raised
	}
	vars["strftime_now"] = func(layout string) string { return strftime(time.Now(), layout) }
	var buf bytes.Buffer
	c.mu.Lock()
	err = c.tpl.Execute(&buf, exec.NewContext(vars))
	c.mu.Unlock()
	switch {
	case raised != nil:
		return "", raised
	case err == nil:
		return buf.String(), nil
	case undefinedCall(err):
		return "", fmt.Errorf("%w: %v", ErrTemplateBroken, err)
	}
	return "", fmt.Errorf("%w: %v", ErrTemplate, err)
}

// strftime is Python's strftime for the directives chat templates use
// (Llama 3.2's "%d %b %Y", Granite's "%B %d, %Y") and a few more; text
// between directives, and unknown directives, stay as they are.
func strftime(t time.Time, layout string) string {
	var sb strings.Builder
	for i := 0; i < len(layout); i++ {
		if layout[i] != '%' || i+1 == len(layout) {
			sb.WriteByte(layout[i])
			continue
		}
		i++
		switch c := layout[i]; c {
		case 'Y':
			fmt.Fprintf(&sb, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&sb, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&sb, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&sb, "%02d", t.Day())
		case 'j':
			fmt.Fprintf(&sb, "%03d", t.YearDay())
		case 'H':
			fmt.Fprintf(&sb, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&sb, "%02d", (t.Hour()+11)%12+1)
		case 'M':
			fmt.Fprintf(&sb, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&sb, "%02d", t.Second())
		case 'p':
			sb.WriteString(t.Format("PM"))
		case 'b':
			sb.WriteString(t.Format("Jan"))
		case 'B':
			sb.WriteString(t.Format("January"))
		case 'a':
			sb.WriteString(t.Format("Mon"))
		case 'A':
			sb.WriteString(t.Format("Monday"))
		case '%':
			sb.WriteByte('%')
		default:
			sb.WriteByte('%')
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// LoadChatTemplate reads chat_template, bos_token and eos_token from a
// tokenizer_config.json; a missing file or field gives the default
// template. A named-template list picks "default".
func LoadChatTemplate(path string) (*ChatTemplate, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return NewChatTemplate(DefaultChatTemplate, "", "")
	}
	if err != nil {
		return nil, err
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	src := DefaultChatTemplate
	var s string
	var named []struct{ Name, Template string }
	switch {
	case json.Unmarshal(cfg.ChatTemplate, &s) == nil && s != "":
		src = s
	case json.Unmarshal(cfg.ChatTemplate, &named) == nil:
		for _, n := range named {
			if n.Name == "default" {
				src = n.Template
			}
		}
	}
	t, err := NewChatTemplate(src, specialToken(cfg.BOS), specialToken(cfg.EOS))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// specialToken reads "<s>" or {"content": "<s>", ...}.
func specialToken(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct{ Content string }
	_ = json.Unmarshal(raw, &obj)
	return obj.Content
}
