// Renders every conversation of ../conversations.json with every template
// listed there, as @huggingface/jinja does (the engine transformers.js and
// the Hugging Face Hub use for chat templates), into ../rendered.json: the
// prompt, or the error a template raised.
//
//   cd coordinator/api/testdata/templates/ref && npm ci && node render.mjs
//
// Not part of CI; the Go tests read the committed output.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Template } from '@huggingface/jinja';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const spec = JSON.parse(fs.readFileSync(path.join(dir, 'conversations.json'), 'utf8'));
const version = JSON.parse(fs.readFileSync(path.join(dir, 'ref/node_modules/@huggingface/jinja/package.json'), 'utf8')).version;

const out = { generator: '@huggingface/jinja ' + version, renders: [] };
for (const [name, t] of Object.entries(spec.templates)) {
  const tpl = new Template(fs.readFileSync(path.join(dir, t.file), 'utf8'));
  for (const c of spec.conversations) {
    const ctx = {
      messages: c.messages,
      add_generation_prompt: c.add_generation_prompt,
      bos_token: t.bos_token,
      eos_token: t.eos_token,
      ...(c.tools ? { tools: spec.tools } : {}),
      ...(c.extra || {}),
    };
    const r = { template: name, conversation: c.name };
    try {
      r.prompt = tpl.render(structuredClone(ctx));
    } catch (e) {
      r.error = String(e.message);
    }
    out.renders.push(r);
  }
}
fs.writeFileSync(path.join(dir, 'rendered.json'), JSON.stringify(out, null, 1) + '\n');
console.log('wrote', out.renders.length, 'renders');
