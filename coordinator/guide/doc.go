// Package guide constrains generation to a language: a regular expression,
// a JSON Schema, any JSON object, or a list of choices (structured outputs,
// guided decoding).
//
// A constraint compiles to a regular expression over the output text, then
// to an NFA over bytes (rune classes lowered to their UTF-8 byte
// sequences, since a token may end inside a character), then to a DFA that
// is built lazily, one state at a time, as generation visits it. Lifted to
// a vocabulary, each DFA state gives the mask of tokens whose bytes keep
// the output a prefix of some match; masks are cached per state. Every
// state the DFA makes can still reach a match (dead ends are pruned in the
// NFA), so a masked sampler can never paint itself into a corner: output
// either completes as a match or runs out of tokens.
//
// Bounds (pattern bytes, NFA nodes, DFA states, cached mask bytes, schema
// nesting, repetition counts) make a hostile constraint fail with
// ErrTooLarge instead of exhausting the coordinator. The coordinator
// compiles once per (vocabulary, constraint) and shares the Matcher among
// requests; a sequence holds only its State.
//
// Why our own code: Go's regexp/syntax parses RE2 patterns and is used
// here, but Go's matchers cannot be resumed byte by byte from a saved
// state, and no maintained Go library lowers JSON Schema to an automaton.
package guide
