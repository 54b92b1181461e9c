package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var chat = []map[string]any{
	{"role": "system", "content": "You are terse."},
	{"role": "user", "content": "  Hi there \n"},
	{"role": "assistant", "content": "Hello."},
	{"role": "user", "content": "Sum 2+2?"},
}

// Templates shaped like the ones Hugging Face models ship: ChatML (Qwen),
// Zephyr, Llama-2 (raise_exception, loop.index0, trim) and Mistral.
func TestChatTemplates(t *testing.T) {
	cases := []struct {
		name, src, want string
		msgs            []map[string]any
	}{
		{"chatml", `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`,
			"<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n  Hi there \n<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nSum 2+2?<|im_end|>\n<|im_start|>assistant\n", chat},
		{"zephyr", "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
			"<|system|>\nYou are terse.</s>\n<|user|>\n  Hi there \n</s>\n<|assistant|>\nHello.</s>\n<|user|>\nSum 2+2?</s>\n<|assistant|>\n", chat},
		{"llama2", `{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}`,
			"<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n  Hi there [/INST] Hello. </s><s>[INST] Sum 2+2? [/INST]", chat},
		{"mistral-trim", `{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}{% else %}{{ message['content'] | trim + eos_token }}{% endif %}{% endfor %}`,
			"<s>[INST] Hi there [/INST]Hello.</s>", chat[1:3]},
		{"default", DefaultChatTemplate, "system: You are terse.\n\nuser: Hi there\n\nassistant: Hello.\n\nuser: Sum 2+2?\n\nassistant:", chat},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := NewChatTemplate(tc.src, "<s>", "</s>")
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.Render(tc.msgs, true)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	// raise_exception surfaces as ErrTemplate with its message.
	tpl, _ := NewChatTemplate(cases[2].src, "<s>", "</s>")
	_, err := tpl.Render([]map[string]any{{"role": "user", "content": "a"}, {"role": "user", "content": "b"}}, true)
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "must alternate") {
		t.Fatalf("raise_exception: %v", err)
	}
}

func TestLoadChatTemplate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokenizer_config.json")
	os.WriteFile(p, []byte(`{"bos_token": {"content": "<B>"}, "eos_token": "<E>", "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]}`), 0o644)
	tpl, err := LoadChatTemplate(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tpl.Render(chat, false); got != "<B>You are terse.<E>" {
		t.Fatalf("named default template: %q", got)
	}
	tpl, err = LoadChatTemplate(filepath.Join(dir, "missing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tpl.Render(chat[:1], true); got != "system: You are terse.\n\nassistant:" {
		t.Fatalf("default template: %q", got)
	}
}

// A template that calls an undefined function is refused at load, as a
// broken template, not blamed on the messages of every request.
func TestBrokenChatTemplate(t *testing.T) {
	for _, src := range []string{
		`{% for m in messages %}{{ undefined_helper(m['content']) }}{% endfor %}`,
		`{{ messages[0]['content'] | no_such_filter }}`,
	} {
		if _, err := NewChatTemplate(src, "", ""); !errors.Is(err, ErrTemplateBroken) {
			t.Errorf("%s: err %v, want ErrTemplateBroken", src, err)
		}
	}
	// raise_exception in the sample conversation is the messages' fault,
	// not the template's: it loads.
	if _, err := NewChatTemplate(`{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}`, "", ""); err != nil {
		t.Fatal(err)
	}
}
