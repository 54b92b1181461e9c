// Package tokenizer reads a Hugging Face tokenizer.json and encodes and
// decodes exactly as Hugging Face tokenizers 0.23 does: the same ids, token
// strings and offsets, and the same decoded text.
//
// The pipeline is HF's: added tokens are cut out of the text first and never
// split; the rest goes through the normalizer, the pre-tokenizer and the
// model; the post-processor adds special tokens when asked. Each stage is
// registered by its tokenizer.json "type" in an init-time map:
//
//   - models: BPE (byte-level, with byte fallback, continuing-subword prefix
//     and end-of-word suffix), WordPiece, WordLevel, Unigram;
//   - normalizers: BertNormalizer, Prepend, Replace, Lowercase, Strip,
//     StripAccents, NFC, NFD, NFKC, NFKD, Sequence;
//   - pre-tokenizers: ByteLevel (GPT-2 split, hand-written), Metaspace,
//     BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation, Digits,
//     Split, Sequence;
//   - post-processors: TemplateProcessing, BertProcessing,
//     RobertaProcessing, ByteLevel, Sequence;
//   - decoders: ByteLevel, Metaspace, WordPiece, BPEDecoder, Replace,
//     ByteFallback, Fuse, Strip, Sequence.
//
// Offsets are character (code point) offsets into the input, as HF's Python
// API reports them. Decode with skipSpecial drops special added tokens (HF's
// rule), which also drops byte tokens a tokenizer registered as special.
// NewDecoder gives a StreamDecoder for streaming generation: it never emits
// part of a UTF-8 character and its pieces concatenate to Decode's text.
//
// Load and FromJSON report problems with sentinel errors (ErrMalformed,
// ErrUnknownType, ErrMissingVocab, ErrBadMerges, ErrUnsupported) wrapped
// with what and where. A Tokenizer is safe for concurrent use.
package tokenizer
