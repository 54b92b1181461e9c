package tokenizer

import "unicode/utf8"

// The split regexes of GPT-2, Llama 3 and Qwen2 end in \s+(?!\S), a
// look-ahead Go's RE2 cannot run. Each is recognised by its exact text and
// run by a hand-written scanner that returns the end of the match starting
// at i; every position starts a match, so the matches tile the text.
var splitScanners = map[string]func(s string, i int) int{
	`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`: gpt2Next,
	// Llama 3 (tiktoken's cl100k pattern): numbers in runs of up to three.
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: func(s string, i int) int {
		return cl100kNext(s, i, 3)
	},
	// Qwen2: the same with one digit per match.
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: func(s string, i int) int {
		return cl100kNext(s, i, 1)
	},
}

// cl100kNext returns the end of the match at i of
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// taking the alternatives in order, as Oniguruma's backtracking does.
func cl100kNext(s string, i, maxDigits int) int {
	if s[i] == '\'' {
		if n := contraction(s[i+1:]); n > 0 {
			return i + 1 + n
		}
	}
	cls, size := classAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	j := i
	if cls != clsLetter && cls != clsNumber && s[i] != '\r' && s[i] != '\n' {
		j = i + size
	}
	if j < len(s) {
		if c, _ := classAt(s, j); c == clsLetter {
			return runOf(s, j, clsLetter, -1)
		}
	}
	switch cls {
	case clsNumber:
		return runOf(s, i, clsNumber, maxDigits)
	case clsOther:
		return newlinesAfter(s, runOf(s, i, clsOther, -1))
	}
	// cls is clsSpace.
	if s[i] == ' ' && i+1 < len(s) {
		if c, _ := classAt(s, i+1); c == clsOther {
			return newlinesAfter(s, runOf(s, i+1, clsOther, -1))
		}
	}
	// \s*[\r\n]+: the whitespace run up to its last line break.
	k, lastNL, last := i, -1, 0
	for k < len(s) {
		c, sz := classAt(s, k)
		if c != clsSpace {
			break
		}
		if s[k] == '\r' || s[k] == '\n' {
			lastNL = k
		}
		k += sz
		last = sz
	}
	if lastNL >= 0 {
		return lastNL + 1
	}
	// \s+(?!\S), else \s+.
	if k < len(s) && k-last > i {
		return k - last
	}
	return k
}

// contraction is the length of the (?i:s|t|re|ve|m|ll|d) that starts s, or
// 0. Case-insensitive as Oniguruma folds: ſ (U+017F) folds to s.
func contraction(s string) int {
	if len(s) == 0 {
		return 0
	}
	lower := func(k int) byte {
		if k >= len(s) {
			return 0
		}
		return s[k] | 0x20
	}
	switch lower(0) {
	case 's':
		if s[0] == 's' || s[0] == 'S' {
			return 1
		}
	case 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if lower(1) == 'e' {
			return 2
		}
	case 'l':
		if lower(1) == 'l' {
			return 2
		}
	}
	if r, size := utf8.DecodeRuneInString(s); r == 'ſ' {
		return size
	}
	return 0
}

// runOf returns the end of the run of characters of class cls from i, at
// most limit characters long (limit < 0: unbounded).
func runOf(s string, i int, cls uint8, limit int) int {
	for n := 0; i < len(s) && n != limit; n++ {
		c, sz := classAt(s, i)
		if c != cls {
			break
		}
		i += sz
	}
	return i
}

// newlinesAfter extends a match over the [\r\n]* that follows it.
func newlinesAfter(s string, i int) int {
	for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}
