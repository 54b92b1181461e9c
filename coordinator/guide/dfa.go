package guide

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// dfa is the subset construction of an NFA, built lazily: a state is made
// the first time a byte leads to it, so a pattern whose full DFA would be
// exponential costs only the states that generation visits. Its bounds
// limit its memory and time; a walk past one fails with ErrTooLarge.
type dfa struct {
	mu     sync.Mutex
	n      *nfa
	bounds dfaBounds
	// work counts the NFA nodes that building states has visited: a
	// state costs its NFA set, which for a small pattern over large
	// classes ((\pL*\pN*){50}) is a hundred thousand nodes.
	work int
	// held counts the NFA nodes of the states' sets, which each state
	// keeps twice (its set and its key): memory that the state count
	// alone does not bound.
	held   int
	ids    map[string]int32
	sets   [][]int32
	accept []bool
	// trans[s][b] is the state after byte b from s: unknown (-2), dead
	// (-1) or a state.
	trans [][256]int32
	// classOf maps a byte to its class: bytes no node's range tells
	// apart, which lead from every state to the same state; classes
	// lists each class's bytes. A transition is computed once per class.
	classOf [256]uint8
	classes [][]byte
	// scratch for closures
	mark  []uint32
	epoch uint32
	stack []int32
}

const (
	unknown = -2
	dead    = -1
)

// dfaBounds limit what building one DFA may cost.
type dfaBounds struct {
	states int // states built
	work   int // NFA nodes visited building them
	held   int // NFA nodes their sets hold
}

func newDFA(n *nfa, b dfaBounds) (*dfa, int32, error) {
	d := &dfa{n: n, bounds: b, ids: map[string]int32{}, mark: make([]uint32, len(n.nodes))}
	d.byteClasses()
	start, err := d.intern(d.closure([]int32{n.start}))
	return d, start, err
}

// byteClasses splits the bytes at every edge of a byte node's range.
func (d *dfa) byteClasses() {
	var edge [257]bool
	for _, nd := range d.n.nodes {
		if nd.kind == nByte && nd.lo <= nd.hi {
			edge[nd.lo], edge[int(nd.hi)+1] = true, true
		}
	}
	for c := range 256 {
		if c == 0 || edge[c] {
			d.classes = append(d.classes, nil)
		}
		k := len(d.classes) - 1
		d.classOf[c] = uint8(k)
		d.classes[k] = append(d.classes[k], byte(c))
	}
}

// closure follows split nodes from roots and returns the sorted byte and
// match nodes reached.
func (d *dfa) closure(roots []int32) []int32 {
	d.epoch++
	var set []int32
	d.stack = append(d.stack[:0], roots...)
	for len(d.stack) > 0 {
		d.work++
		i := d.stack[len(d.stack)-1]
		d.stack = d.stack[:len(d.stack)-1]
		if i < 0 || !d.n.live[i] || d.mark[i] == d.epoch {
			continue
		}
		d.mark[i] = d.epoch
		nd := &d.n.nodes[i]
		if nd.kind == nSplit {
			d.stack = append(d.stack, nd.out1, nd.out)
			continue
		}
		set = append(set, i)
	}
	slices.Sort(set)
	return set
}

func (d *dfa) intern(set []int32) (int32, error) {
	if len(set) == 0 {
		return dead, nil
	}
	key := make([]byte, 4*len(set))
	for i, v := range set {
		binary.LittleEndian.PutUint32(key[4*i:], uint32(v))
	}
	if id, ok := d.ids[string(key)]; ok {
		return id, nil
	}
	if len(d.sets) >= d.bounds.states {
		return 0, fmt.Errorf("%w: more than %d automaton states", ErrTooLarge, d.bounds.states)
	}
	if d.held += len(set); d.held > d.bounds.held {
		return 0, fmt.Errorf("%w: its automaton states hold more than %d NFA nodes", ErrTooLarge, d.bounds.held)
	}
	id := int32(len(d.sets))
	d.ids[string(key)] = id
	d.sets = append(d.sets, set)
	acc := false
	for _, i := range set {
		acc = acc || d.n.nodes[i].kind == nMatch
	}
	d.accept = append(d.accept, acc)
	var row [256]int32
	for b := range row {
		row[b] = unknown
	}
	d.trans = append(d.trans, row)
	return id, nil
}

// step is the state after byte c from s (dead when no match can follow).
// The caller holds d.mu.
func (d *dfa) step(s int32, c byte) (int32, error) {
	if t := d.trans[s][c]; t != unknown {
		return t, nil
	}
	var next []int32
	d.work += len(d.sets[s])
	for _, i := range d.sets[s] {
		nd := &d.n.nodes[i]
		if nd.kind == nByte && nd.lo <= c && c <= nd.hi {
			next = append(next, nd.out)
		}
	}
	t, err := d.intern(d.closure(next))
	if err != nil {
		return 0, err
	}
	if d.work > d.bounds.work {
		return 0, fmt.Errorf("%w: building its automaton took more than %d steps", ErrTooLarge, d.bounds.work)
	}
	for _, b := range d.classes[d.classOf[c]] {
		d.trans[s][b] = t
	}
	return t, nil
}

// markLive finds the nodes from which the match node is reachable. The
// DFA keeps only those, so every state it makes can still be completed: a
// token is never allowed into a dead end.
func (n *nfa) markLive() {
	rev := make([][]int32, len(n.nodes))
	var stack []int32
	for i, nd := range n.nodes {
		switch {
		case nd.kind == nMatch:
			stack = append(stack, int32(i))
		case nd.kind == nSplit:
			for _, o := range []int32{nd.out, nd.out1} {
				if o >= 0 {
					rev[o] = append(rev[o], int32(i))
				}
			}
		case nd.lo <= nd.hi:
			rev[nd.out] = append(rev[nd.out], int32(i))
		}
	}
	n.live = make([]bool, len(n.nodes))
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.live[i] {
			continue
		}
		n.live[i] = true
		stack = append(stack, rev[i]...)
	}
}

// matches reports whether text is a whole match from state s. The caller
// holds d.mu, or is the DFA's only user.
func (d *dfa) matches(s int32, text []byte) (bool, error) {
	for _, c := range text {
		var err error
		if s, err = d.step(s, c); err != nil || s == dead {
			return false, err
		}
	}
	return d.accept[s], nil
}
