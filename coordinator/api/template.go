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
// "assistant:". It uses no special tokens, so it suits any tokenizer.
const DefaultChatTemplate = `{%- for message in messages -%}
{{ message['role'] }}: {{ message['content'] | trim }}

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

// sampleChat is the conversation NewChatTemplate renders to find a
// broken template at load rather than on every request.
var sampleChat = []map[string]any{
	{"role": "system", "content": "s"},
	{"role": "user", "content": "u"},
	{"role": "assistant", "content": "a"},
	{"role": "user", "content": "u"},
}

// NewChatTemplate parses a Jinja chat template; bos and eos are the
// values of bos_token and eos_token inside it.
func NewChatTemplate(source, bos, eos string) (*ChatTemplate, error) {
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
	tpl, err := exec.NewTemplate("chat_template", cfg, shifted, gonja.DefaultEnvironment)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing: %v", ErrTemplateBroken, err)
	}
	c := &ChatTemplate{tpl: tpl, bos: bos, eos: eos}
	for _, addGen := range []bool{true, false} {
		if _, err := c.Render(sampleChat, addGen); errors.Is(err, ErrTemplateBroken) {
			return nil, err
		}
	}
	return c, nil
}

// Render applies the template to messages (each a map with at least role
// and content).
func (c *ChatTemplate) Render(messages []map[string]any, addGenerationPrompt bool) (string, error) {
	// gonja does not wrap a function's error: remember it to tell a
	// raise_exception from a broken template.
	var raised error
	ctx := exec.NewContext(map[string]any{
		"messages":              messages,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             c.bos,
		"eos_token":             c.eos,
		"raise_exception": func(msg string) (string, error) {
			raised = fmt.Errorf("%w: %s", ErrTemplate, msg)
			return "", raised
		},
		"strftime_now": func(layout string) string { return strftime(time.Now(), layout) },
	})
	var buf bytes.Buffer
	c.mu.Lock()
	err := c.tpl.Execute(&buf, ctx)
	c.mu.Unlock()
	if raised != nil {
		return "", raised
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrTemplateBroken, err)
	}
	return buf.String(), nil
}

// strftime covers the directives chat templates use (Llama 3's
// "%d %b %Y").
func strftime(t time.Time, layout string) string {
	r := strings.NewReplacer("%d", "02", "%b", "Jan", "%B", "January", "%Y", "2006", "%m", "01", "%H", "15", "%M", "04", "%S", "05", "%y", "06", "%a", "Mon", "%A", "Monday")
	return t.Format(r.Replace(layout))
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
