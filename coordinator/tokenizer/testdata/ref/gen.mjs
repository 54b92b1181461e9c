// Regenerates ../pipelines: three tokenizer.json files with the pipelines of
// Llama 3, Qwen2 and Mistral v0.3 (headers copied from the published files,
// see ../pipelines/README.md) over small vocabularies trained here, and
// ref.json, their encodings and decodings by Hugging Face tokenizers (the
// npm package, Rust core) of the golden strings plus random and adversarial
// strings. Deterministic: rerunning it rewrites the same bytes.
//
//   cd coordinator/tokenizer/testdata/ref && npm ci && node gen.mjs
//
// Not part of CI; the Go tests read the committed outputs.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tk from 'tokenizers';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', 'pipelines');
const golden = JSON.parse(fs.readFileSync(path.join(here, '../../../../testdata/golden/tokenizers/golden.json'), 'utf8'));

// ---------------------------------------------------------------- headers

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const added = (id, content, special = true) =>
  ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });

const template = (bos, bosId) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [
    { SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
    { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
  ],
  special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
});

const pipelines = {
  llama3: {
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post: (ids) => ({
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        template('<|begin_of_text|>', ids['<|begin_of_text|>']),
      ],
    }),
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: true,
    },
    // Llama 3.1's first eleven added tokens (of 256), all special.
    added: ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>', '<|reserved_special_token_1|>',
      '<|finetune_right_pad_id|>', '<|reserved_special_token_2|>', '<|start_header_id|>', '<|end_header_id|>',
      '<|eom_id|>', '<|eot_id|>', '<|python_tag|>'].map((c) => [c, true]),
    byteLevel: true,
    merges: 600,
    // Whole words in the vocab that the merges do not build: ignore_merges
    // takes them as one token.
    vocabOnly: ['Ġtokenizer', 'Ġunbelievable', 'Ġ2026', 'çĮ«'],
  },
  qwen2: {
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post: () => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }),
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
    },
    // Qwen2.5's added tokens, a subset: <tool_call> and the FIM tokens are
    // not special there either.
    added: [['<|endoftext|>', true], ['<|im_start|>', true], ['<|im_end|>', true], ['<|object_ref_start|>', true],
      ['<tool_call>', false], ['</tool_call>', false], ['<|fim_prefix|>', false], ['<|fim_middle|>', false]],
    byteLevel: true,
    merges: 600,
    vocabOnly: [],
  },
  mistral: {
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post: (ids) => template('<s>', ids['<s>']),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false,
    },
    // Mistral v0.3's first control tokens (ids 0-10 there too), all special.
    added: ['<unk>', '<s>', '</s>', '[INST]', '[/INST]', '[TOOL_CALLS]', '[AVAILABLE_TOOLS]', '[/AVAILABLE_TOOLS]',
      '[TOOL_RESULTS]', '[/TOOL_RESULTS]', '[control_8]'].map((c) => [c, true]),
    byteLevel: false,
    merges: 600,
    vocabOnly: [],
  },
};

// ---------------------------------------------------------------- corpus

const corpus = [
  ...golden.bytelevel_bpe.cases.filter((c) => !c.add_special_tokens).map((c) => c.text),
  'The tokenizer splits text into words, and the words into tokens. Tokens are what the model reads.',
  "It's what they've said: we'll see, I'm sure they'd agree, and you're right. DON'T SHOUT, IT'S LATE.",
  'Llama 3 was released in 2024; Llama 3.1 followed with a context of 128000 tokens and tool calling.',
  'Qwen2.5 speaks Chinese and English: 今天天气很好，我们去公园散步吧。明天可能会下雨。',
  'Mistral models use a SentencePiece vocabulary with byte fallback for characters they have not seen.',
  'def main():\n    for i in range(10):\n        print(i * 2)\n    return None\n\nif __name__ == "__main__":\n    main()\n',
  'Prices: $12.50, €9.99, £7 — about 30% off! Call +1 (555) 123-4567 or email info@example.com.',
  'Der schnelle braune Fuchs springt über den faulen Hund. Très bien, merci beaucoup! ¿Dónde está?',
  'Съешь же ещё этих мягких французских булок, да выпей чаю. Ελληνικά γράμματα και αριθμοί 123.',
  'こんにちは世界。カタカナとひらがなの文章です。한국어 문장도 있습니다. مرحبا بالعالم',
  'the the the and and of of to to in in is is that that for for with with on on as as',
  'user assistant system tool function arguments content role name weather temperature Paris',
];

// ---------------------------------------------------------------- training

// pieces splits text the way the pipeline's pre-tokenizer does (through the
// real pre-tokenizer, so training sees exactly what encoding will see).
function pieces(p, text) {
  if (p.byteLevel) {
    const t = tk.Tokenizer.fromString(JSON.stringify({
      ...skeleton(p, {}, [], []), post_processor: null,
    }));
    const n = t.getNormalizer();
    const pre = t.getPreTokenizer().preTokenizeString(n ? n.normalizeString(text) : text);
    return pre.map(([s]) => s);
  }
  // SentencePiece style: train on ▁-prefixed words.
  return ('▁' + text.replaceAll(' ', '▁')).split(/(?=▁)/u).filter((s) => s !== '');
}

function train(p) {
  const counts = new Map();
  for (const text of corpus) for (const w of pieces(p, text)) counts.set(w, (counts.get(w) || 0) + 1);
  let words = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, n]) => ({ syms: [...w], n }));
  const vocab = [];
  if (p.byteLevel) vocab.push(...tk.byteLevelAlphabet().sort());
  else {
    for (let b = 0; b < 256; b++) vocab.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    const chars = new Map();
    for (const w of words) for (const c of w.syms) chars.set(c, (chars.get(c) || 0) + w.n);
    // Characters seen twice or more; the rest falls back to bytes.
    vocab.push(...[...chars.entries()].filter(([, n]) => n >= 2).map(([c]) => c).sort());
    const known = new Set(vocab);
    words = words.map((w) => ({ n: w.n, syms: w.syms.map((c) => (known.has(c) ? c : null)) }));
  }
  const have = new Set(vocab);
  const merges = [];
  while (merges.length < p.merges) {
    const pairs = new Map();
    for (const w of words) {
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const a = w.syms[i], b = w.syms[i + 1];
        if (a === null || b === null) continue;
        const k = a + '\u0000' + b;
        pairs.set(k, (pairs.get(k) || 0) + w.n);
      }
    }
    let best = null, bestN = 0;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && k < best)) { best = k; bestN = n; }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    merges.push(a + ' ' + b);
    if (!have.has(a + b)) { have.add(a + b); vocab.push(a + b); }
    for (const w of words) {
      const s = [];
      for (let i = 0; i < w.syms.length; i++) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) { s.push(a + b); i++; } else s.push(w.syms[i]);
      }
      w.syms = s;
    }
  }
  for (const w of p.vocabOnly) if (!have.has(w)) { have.add(w); vocab.push(w); }
  return { vocab, merges };
}

function skeleton(p, vocab, merges, addedTokens, ids) {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: p.normalizer,
    pre_tokenizer: p.pre_tokenizer,
    post_processor: ids ? p.post(ids) : null,
    decoder: p.decoder,
    model: { ...p.model, vocab, merges },
  };
}

function build(name, p) {
  const { vocab: pieceList, merges } = train(p);
  const vocab = {};
  const ids = {};
  const addedTokens = [];
  // Mistral puts its control tokens first (ids 0..), the byte-level
  // tokenizers append theirs after the vocab.
  const controlFirst = !p.byteLevel;
  let next = 0;
  const addAll = () => {
    for (const [c, special] of p.added) {
      ids[c] = next;
      vocab[c] = next;
      addedTokens.push(added(next, c, special));
      next++;
    }
  };
  if (controlFirst) addAll();
  for (const t of pieceList) if (!(t in vocab)) vocab[t] = next++;
  if (!controlFirst) {
    // In Llama 3 and Qwen2 the added tokens are not in model.vocab.
    for (const [c, special] of p.added) {
      ids[c] = next;
      addedTokens.push(added(next, c, special));
      next++;
    }
  }
  const json = skeleton(p, vocab, merges, addedTokens, ids);
  fs.writeFileSync(path.join(out, name + '.json'), JSON.stringify(json, null, 1) + '\n');
  return tk.Tokenizer.fromFile(path.join(out, name + '.json'));
}

// ---------------------------------------------------------------- strings

// mulberry32: a seeded PRNG, so the random strings are the same every run.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const adversarial = [
  "I'M HERE, YOU'RE THERE, WE'LL GO, THEY'VE GONE, SHE'D SAY, HE'S OUT, IT'T", "'ſ 'ﬆ 'K 'İ",
  "''s 's's 'x 're've", "'ſx 'Sx 'ﬆx '\u212Ax 'tx 'Rex 'LLx 'ſ1", "rock'n'roll o'clock y'all",
  '1', '12', '123', '1234', '12345678901234567890', ' 1234567 ', 'a1b22c333d4444', '٠١٢٣٤٥٦٧٨٩ ١٢٣٤',
  '１２３４５ ²³¹ ½¾ ⅫⅣ ① 𝟙𝟚𝟛', '3.14159265358979 -42 +7e10 0x1F',
  '   ', '\t\t\t', '\n', '\n\n\n', '\r\n\r\n', ' \n \n ', 'a \n\n b', 'a  \n  b', 'x\t \ty',
  'a    b', 'trailing    ', '    leading', '\u00a0\u00a0nbsp\u00a0', '\u3000ideographic\u3000space', 'thin\u2009space\u200bzw',
  '\u0085nel\u2028ls\u2029ps', '\u000bvt\u000cff\r cr',
  'e\u0301 cafe\u0301 A\u030a \u212b \u2126 ﬁ', '\u0301\u0302 starts with marks', 'ạ̈ ǭ̄ q̣̇', 'é́́́́́',
  '\u1100\u1161\u11a8 \u1112\u1161\u11ab', '각 한', 'Å Å', 'ｱｲｳ ｶﾞ', 'ﾊﾟ ﾊﾟ',
  '👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️ #️⃣', '🤗🤗🤗🤗', 'a🤗b', ' 🤗', '🤗 ', '\ud83e\udd17\u200d\ud83d\ude80',
  '!!!???...', ' !!! ', '-->', '!=== <<>> ||', '»«„“”‘’', '...\n\n', '):\n', '}\n\n}', ' }\r\n',
  '<|eot_id|>', 'hi<|eot_id|>there', '<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>',
  '<|im_start|>user\nHi<|im_end|>\n', '<tool_call>{"a": 1}</tool_call>', '<s>[INST] Hello [/INST]</s>',
  ' [INST]x[/INST] ', '<s><s></s>', '<|begin_of_text|><|begin_of_text|>', '<unk>', '<|fim_prefix|>x<|fim_middle|>',
  'مرحبا بالعالم ١٢٣', 'שלום עולם', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'ཀཱཱིི', 'Ελληνικά', 'Привет, мир!',
  'Δ δ ς Σ ß ẞ ǅ ǈ', 'ΑΒΓ αβγ', 'İstanbul ıi', 'ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝', 'ᚠᚢᚦ ᚨᚱ', '\ufeffbom', '\u200e\u200fdir',
  'tokenizer unbelievable 2026 猫 tokenizers', ' tokenizer', 'Tokenizer', ' 2026', '猫猫',
  'x'.repeat(300), ' '.repeat(100) + 'x', 'ab'.repeat(120), '9'.repeat(50),
  '\u0000null\u0001ctl\u007fdel', '\uFFFD\uFFFE\uFFFF',
];

const pools = [
  'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', '        ', '\t\n\r\n\n',
  "'''", '.,;:!?()[]{}<>-_=+*/\\|"#$%&@^`~', 'éèêëàâäôöûüçñßøåæœ', 'абвгдежзийклмнопрстуфхцчшщъыьэюя',
  'αβγδεζηθικλμνξοπρστυφχψω', '的一是不了人我在有他这为之大来以个中上们', 'あいうえおかきくけこアイウエオ',
  '가나다라마바사아자차카타파하', 'ابتثجحخدذرزسشصضطظعغفقكلمنهوي', '०१२३४५६७८९कखगघ', '٠١٢٣٤٥٦٧٨٩',
  '\u0300\u0301\u0302\u0303\u0308\u0327\u0328\u0323', '\u00a0\u2009\u3000\u200b\u200d\u2028',
  ['🤗', '🚀', '👍🏽', '👨‍👩‍👧', '🇫🇷', '❤️', '😀', '🧑‍💻', '𝕏', '𠀀'],
  ['<|eot_id|>', '<|im_start|>', '<|im_end|>', '[INST]', '[/INST]', '<s>', '</s>', '<tool_call>', '<|begin_of_text|>'],
  ["'s", "'T", "'re", "'VE", "'m", "'Ll", "'d", "n't"], ['hello', ' world', ' the', 'token', ' 2026', 'Paris'],
];

function randomStrings(n) {
  const r = rng(18);
  const outS = [];
  for (let k = 0; k < n; k++) {
    const len = 1 + Math.floor(r() * (k % 7 === 0 ? 60 : 18));
    let s = '';
    for (let i = 0; i < len; i++) {
      const pool = pools[Math.floor(r() * pools.length)];
      const items = typeof pool === 'string' ? [...pool] : pool;
      let piece = items[Math.floor(r() * items.length)];
      if (r() < 0.15) piece = piece.repeat(1 + Math.floor(r() * 5));
      s += piece;
    }
    outS.push(s);
  }
  return outS;
}

const goldenStrings = golden.bytelevel_bpe.cases.filter((c) => !c.add_special_tokens).map((c) => c.text);
const strings = [...goldenStrings, ...adversarial, ...randomStrings(260)];

// ---------------------------------------------------------------- reference

fs.mkdirSync(out, { recursive: true });
const ref = { generator: 'tokenizers (npm) ' + JSON.parse(fs.readFileSync(path.join(here, 'node_modules/tokenizers/package.json'), 'utf8')).version, tokenizers: {} };
for (const [name, p] of Object.entries(pipelines)) {
  const t = build(name, p);
  const pre = t.getPreTokenizer();
  const cases = [];
  for (const text of strings) {
    for (const addSpecial of [false, true]) {
      const e = await t.encode(text, null, { addSpecialTokens: addSpecial });
      const ids = e.getIds();
      cases.push({
        text, add_special_tokens: addSpecial, ids, tokens: e.getTokens(), offsets: e.getOffsets(),
        decoded: await t.decode(ids, true), decoded_with_special: await t.decode(ids, false),
        // The split alone, on the raw text (no normalizer, no added tokens).
        ...(addSpecial ? {} : { pretokens: pre.preTokenizeString(text).map(([piece]) => piece) }),
      });
    }
  }
  ref.tokenizers[name] = { vocab_size: t.getVocabSize(true), cases };
}
// One case per line, so a regeneration diffs readably.
const lines = [`{"generator": ${JSON.stringify(ref.generator)}, "tokenizers": {`];
Object.entries(ref.tokenizers).forEach(([name, set], i, all) => {
  lines.push(`${JSON.stringify(name)}: {"vocab_size": ${set.vocab_size}, "cases": [`);
  set.cases.forEach((c, j) => lines.push(JSON.stringify(c) + (j + 1 < set.cases.length ? ',' : '')));
  lines.push(']}' + (i + 1 < all.length ? ',' : ''));
});
lines.push('}}');
fs.writeFileSync(path.join(out, 'ref.json'), lines.join('\n') + '\n');
console.log('wrote', out, strings.length, 'strings');
