package guide

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// Vocab is a tokenizer's vocabulary as output bytes: what each token adds
// to the text when it is generated mid-sequence. Tokens are kept sorted so
// that a walk shares the automaton steps of common prefixes, as a trie
// would, without building one.
//
// Masks are exact at the byte level: a token is allowed when its bytes keep
// the output completable. That a completion can also be spelled in tokens
// holds for vocabularies that spell every byte (byte-level BPE, byte
// fallback: every generative model we serve); with another vocabulary a
// sequence can reach a state no token continues, and ends there.
type Vocab struct {
	size   int
	pieces [][]byte // by id; nil for tokens never allowed (special, empty)
	order  []int32  // ids with pieces, sorted by piece
	// sorted[k] is order[k]'s piece, laid out in that order in one
	// buffer: the mask walk reads the vocabulary front to back, which
	// at 150k tokens the pieces' own allocations made a cache miss each.
	sorted [][]byte
	lcp    []int32 // lcp[k]: common prefix length of order[k-1] and order[k]
	maxLen int
	eos    []int32
}

// NewVocab builds the vocabulary of size logits columns. piece gives a
// token's bytes (ok false for a token that generation must never pick,
// such as a special token); eos are the tokens that end a sequence.
func NewVocab(size int, piece func(id int32) ([]byte, bool), eos []int32) *Vocab {
	v := &Vocab{size: size, pieces: make([][]byte, size)}
	for id := range int32(size) {
		if p, ok := piece(id); ok && len(p) > 0 && !slices.Contains(eos, id) {
			v.pieces[id] = p
			v.order = append(v.order, id)
			v.maxLen = max(v.maxLen, len(p))
		}
	}
	for _, id := range eos {
		if id >= 0 && int(id) < size {
			v.eos = append(v.eos, id)
		}
	}
	slices.SortFunc(v.order, func(a, b int32) int {
		if c := bytes.Compare(v.pieces[a], v.pieces[b]); c != 0 {
			return c
		}
		return int(a - b)
	})
	total := 0
	for _, id := range v.order {
		total += len(v.pieces[id])
	}
	buf := make([]byte, 0, total)
	v.sorted = make([][]byte, len(v.order))
	for k, id := range v.order {
		buf = append(buf, v.pieces[id]...)
		v.sorted[k] = buf[len(buf)-len(v.pieces[id]):]
		v.pieces[id] = v.sorted[k] // one copy of each piece, not two
	}
	v.lcp = make([]int32, len(v.order))
	for k := 1; k < len(v.order); k++ {
		a, b := v.sorted[k-1], v.sorted[k]
		n := 0
		for n < len(a) && n < len(b) && a[n] == b[n] {
			n++
		}
		v.lcp[k] = int32(n)
	}
	return v
}

// Size is the number of logit columns the vocabulary covers.
func (v *Vocab) Size() int { return v.size }

// Mask is the set of tokens allowed in one automaton state: a bitset over
// the whole vocabulary, bit i of byte i/8 for token i, the layout a step
// carries to the workers (SeqSpan.allow).
type Mask struct {
	Bits []byte
	// N is how many tokens are allowed.
	N int
}

// Has reports whether token id is allowed.
func (m *Mask) Has(id int32) bool {
	return id >= 0 && int(id)>>3 < len(m.Bits) && m.Bits[id>>3]&(1<<(id&7)) != 0
}

func (m *Mask) set(id int32) {
	if !m.Has(id) {
		m.Bits[id>>3] |= 1 << (id & 7)
		m.N++
	}
}

// Matcher is a compiled constraint over one vocabulary. It is shared by
// every sequence generated under the same constraint; a sequence keeps
// only its State. Safe for concurrent use.
type Matcher struct {
	v     *Vocab
	mu    sync.Mutex // guards d and the caches
	d     *dfa
	start State
	masks map[State]*Mask
	// maskBytes bounds the mask cache; past it the cache starts again.
	maskBytes int
	states    []int32 // walk scratch
}

// State is where a sequence is in its constraint.
type State int32

// maxMaskBytes bounds one matcher's cached masks.
const maxMaskBytes = 64 << 20

// NewMatcher compiles spec against v.
func NewMatcher(spec Spec, v *Vocab) (*Matcher, error) {
	d, start, err := spec.automaton()
	if err != nil {
		return nil, err
	}
	m := &Matcher{v: v, d: d, start: State(start), masks: map[State]*Mask{}, states: make([]int32, v.maxLen+1)}
	// A constraint that no token sequence can start (say, a pattern that
	// needs a character no token spells) is as unsatisfiable as one that
	// matches nothing.
	mask, err := m.Allowed(m.start)
	if err != nil {
		return nil, err
	}
	if mask.N == 0 {
		return nil, fmt.Errorf("%w: no token of this vocabulary can begin it", ErrUnsatisfiable)
	}
	return m, nil
}

// Start is the state before any output.
func (m *Matcher) Start() State { return m.start }

// Allowed is the mask of tokens that keep the output a prefix of some
// match, plus the end-of-sequence tokens when the output so far is a
// whole match. The mask is shared: callers must not modify it.
func (m *Matcher) Allowed(s State) (*Mask, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mask, ok := m.masks[s]; ok {
		return mask, nil
	}
	mask := &Mask{Bits: make([]byte, (m.v.size+7)/8)}
	if m.d.accept[s] {
		for _, id := range m.v.eos {
			mask.set(id)
		}
	}
	st := m.states
	st[0] = int32(s)
	valid := 0 // st[0..valid] hold the states after the previous piece's bytes
	for k, id := range m.v.order {
		l := int(m.v.lcp[k])
		if l > valid {
			continue // shares a prefix that already died
		}
		p := m.v.sorted[k]
		ok := true
		for i := l; i < len(p); i++ {
			t, err := m.d.step(st[i], p[i])
			if err != nil {
				return nil, err
			}
			if t == dead {
				valid, ok = i, false
				break
			}
			st[i+1] = t
		}
		if ok {
			valid = len(p)
			mask.set(id)
		}
	}
	if m.maskBytes += len(mask.Bits); m.maskBytes > maxMaskBytes {
		clear(m.masks)
		m.maskBytes = len(mask.Bits)
	}
	m.masks[s] = mask
	return mask, nil
}

// Advance is the state after token id. It fails for a token Allowed did
// not allow: the caller sampled outside the mask, which is a bug.
func (m *Matcher) Advance(s State, id int32) (State, error) {
	if id < 0 || int(id) >= m.v.size {
		return 0, fmt.Errorf("guide: token %d outside the vocabulary", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.v.isEOS(id) && m.d.accept[s] {
		return s, nil
	}
	t := int32(s)
	for _, c := range m.v.pieces[id] {
		var err error
		if t, err = m.d.step(t, c); err != nil {
			return 0, err
		}
		if t == dead {
			break
		}
	}
	if t == dead || m.v.pieces[id] == nil {
		return 0, fmt.Errorf("guide: token %d does not continue the constraint", id)
	}
	return State(t), nil
}

// Complete reports whether the output in state s is a whole match.
func (m *Matcher) Complete(s State) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.d.accept[s]
}

// Final reports whether s is a whole match that nothing can extend: the
// sequence is done whether or not the model would say so.
func (m *Matcher) Final(s State) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.d.accept[s] {
		return false, nil
	}
	for c := range 256 {
		t, err := m.d.step(int32(s), byte(c))
		if err != nil || t != dead {
			return false, err
		}
	}
	return true, nil
}

func (v *Vocab) isEOS(id int32) bool { return slices.Contains(v.eos, id) }
