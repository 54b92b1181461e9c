package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// delta is what one sequence produced since its last delta: the text
// that is now final (never half a UTF-8 character, never a possible start
// of a stop string) and the tokens behind it.
type delta struct {
	seq    int // p·bestOf + j
	text   string
	tokens []scheduler.Token
	// finish is set on a sequence's last delta: "stop" or "length".
	finish string
	err    error
}

// sequence is the outcome of one generated sequence.
type sequence struct {
	prompt int
	text   string
	tokens []scheduler.Token
	finish string
	err    error
}

func (q *sequence) cumLogprob() float64 {
	var s float64
	for _, t := range q.tokens {
		s += t.Logprob
	}
	return s
}

// submitAll queues every sequence of g, or none: a refusal cancels what
// was already queued.
func (s *Server) submitAll(ctx context.Context, g *genRequest) ([]*scheduler.Handle, []context.CancelFunc, error) {
	var hs []*scheduler.Handle
	var cancels []context.CancelFunc
	for p := range g.prompts {
		for j := range g.bestOf {
			cctx, cancel := context.WithCancel(ctx)
			h, err := s.cfg.Scheduler.Submit(cctx, g.seqRequest(p, j))
			if err != nil {
				cancel()
				for _, c := range cancels {
					c()
				}
				return nil, nil, err
			}
			hs = append(hs, h)
			cancels = append(cancels, cancel)
		}
	}
	return hs, cancels, nil
}

// generate runs every sequence of g. Each sequence's deltas go to emit
// (called from one goroutine per sequence; emit must be safe for that),
// and the outcomes are returned in sequence order once all are done.
func (s *Server) generate(ctx context.Context, g *genRequest, emit func(delta)) ([]*sequence, error) {
	hs, cancels, err := s.submitAll(ctx, g)
	if err != nil {
		return nil, err
	}
	out := make([]*sequence, len(hs))
	var wg sync.WaitGroup
	for k, h := range hs {
		wg.Go(func() {
			defer cancels[k]()
			out[k] = s.follow(k, g, h, cancels[k], emit)
		})
	}
	wg.Wait()
	return out, nil
}

// generateAll runs g to the end without streaming and fails with the
// first sequence's error, if any.
func (s *Server) generateAll(ctx context.Context, g *genRequest) ([]*sequence, error) {
	seqs, err := s.generate(ctx, g, nil)
	if err != nil {
		return nil, err
	}
	for _, q := range seqs {
		if q.err != nil {
			return nil, q.err
		}
	}
	return seqs, nil
}

// respond runs g to the end and writes the response object: the chosen
// sequences (the n best of best_of per prompt), each as choice(i, q),
// with usage over every sequence and, for self_consistency, the vote.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, g *genRequest, id, object string, choice func(i int, q *sequence) map[string]any) {
	seqs, err := s.generateAll(r.Context(), g)
	if err != nil {
		writeError(w, err)
		return
	}
	promptTokens, completionTokens := 0, 0
	for _, p := range g.prompts {
		promptTokens += len(p)
	}
	for _, q := range seqs {
		completionTokens += len(q.tokens)
	}
	chosen := best(g, seqs)
	choices := make([]any, len(chosen))
	for i, q := range chosen {
		choices[i] = choice(i, q)
	}
	resp := map[string]any{"id": id, "object": object, "created": unixNow(), "model": s.cfg.Model,
		"choices": choices, "usage": usage(promptTokens, completionTokens)}
	if g.consistency != nil {
		resp["self_consistency"] = vote(g.consistency, chosen)
	}
	writeJSON(w, http.StatusOK, resp)
}

// follow reads one sequence's tokens, detokenizes them incrementally and
// checks stop strings on the text.
func (s *Server) follow(k int, g *genRequest, h *scheduler.Handle, cancel context.CancelFunc, emit func(delta)) *sequence {
	q := &sequence{prompt: k / g.bestOf}
	var dec TextStream
	if s.cfg.Tokenizer != nil {
		if pc, ok := s.cfg.Tokenizer.(piecer); ok && g.base.Guide != nil {
			dec = &pieceStream{p: pc}
		} else {
			dec = s.cfg.Tokenizer.NewDecoder()
		}
	}
	var text strings.Builder
	pending := ""
	var unsent []scheduler.Token
	start, last := time.Now(), time.Time{}
	send := func(d delta) {
		d.seq = k
		text.WriteString(d.text)
		if emit != nil {
			emit(d)
		}
	}
	for tok := range h.Tokens() {
		now := time.Now()
		if last.IsZero() {
			s.metrics.ttft.Observe(now.Sub(start).Seconds())
		} else {
			s.metrics.itl.Observe(now.Sub(last).Seconds())
		}
		last = now
		s.metrics.generated.Inc()
		q.tokens = append(q.tokens, tok)
		unsent = append(unsent, tok)
		if dec != nil {
			piece, _ := dec.Add(tok.ID)
			pending += piece
		}
		if i, _ := firstStop(pending, g.stops); i >= 0 {
			// The stop string and what follows are dropped; the tokens
			// that produced it are kept.
			send(delta{text: pending[:i], tokens: unsent, finish: "stop"})
			cancel()
			q.text, q.finish = text.String(), "stop"
			return q
		}
		ready := len(pending) - heldSuffix(pending, g.stops)
		if ready > 0 || (g.returnTokenIDs || g.logprobs >= 0) && len(unsent) > 0 {
			send(delta{text: pending[:ready], tokens: unsent})
			pending, unsent = pending[ready:], nil
		}
	}
	res := h.Wait()
	if res.Err != nil {
		q.err = res.Err
		send(delta{err: res.Err})
		q.text = text.String()
		return q
	}
	if dec != nil {
		pending += dec.Flush()
	}
	q.finish = res.Finish
	if i, _ := firstStop(pending, g.stops); i >= 0 {
		pending, q.finish = pending[:i], "stop"
	}
	send(delta{text: pending, tokens: unsent, finish: q.finish})
	q.text = text.String()
	return q
}

// firstStop finds the earliest stop string in text.
func firstStop(text string, stops []string) (int, string) {
	best, which := -1, ""
	for _, st := range stops {
		if i := strings.Index(text, st); i >= 0 && (best < 0 || i < best) {
			best, which = i, st
		}
	}
	return best, which
}

// heldSuffix is the length of the longest suffix of text that begins some
// stop string: it is held back until the next tokens decide.
func heldSuffix(text string, stops []string) int {
	held := 0
	for _, st := range stops {
		for n := min(len(st)-1, len(text)); n > held; n-- {
			if strings.HasSuffix(text, st[:n]) {
				held = n
				break
			}
		}
	}
	return held
}

// best picks, per prompt, the n sequences with the highest cumulative
// logprob (best_of), in their original order when n = best_of.
func best(g *genRequest, seqs []*sequence) []*sequence {
	if g.bestOf == g.n {
		return seqs
	}
	var out []*sequence
	for p := range g.prompts {
		group := slices.Clone(seqs[p*g.bestOf : (p+1)*g.bestOf])
		slices.SortStableFunc(group, func(a, b *sequence) int { return cmp.Compare(b.cumLogprob(), a.cumLogprob()) })
		out = append(out, group[:g.n]...)
	}
	return out
}

// streamSequences streams g's sequences as SSE: first(k) (if any) per
// sequence, then choice(d) per delta as it comes; each sequence's finish
// is held to the end, where the last chunk carries usage; with
// stream_options.include_usage, usage comes instead in a final chunk
// without choices, as OpenAI sends it.
func (s *Server) streamSequences(w http.ResponseWriter, r *http.Request, g *genRequest, object, id string, opts *streamOptions,
	first func(k int) map[string]any, choice func(d delta) map[string]any) {
	hs, cancels, err := s.submitAll(r.Context(), g)
	if err != nil {
		writeError(w, err)
		return
	}
	ev := startSSE(w)
	created := unixNow()
	chunk := func(c map[string]any) map[string]any {
		m := map[string]any{"id": id, "object": object, "created": created, "model": s.cfg.Model, "choices": []any{}}
		if c != nil {
			m["choices"] = []any{c}
		}
		return m
	}
	if first != nil {
		for k := range hs {
			ev.send(chunk(first(k)))
		}
	}
	var mu sync.Mutex
	finals := make([]map[string]any, len(hs))
	emit := func(d delta) {
		mu.Lock()
		defer mu.Unlock()
		if d.err != nil {
			ev.send(map[string]any{"error": errorBody(d.err)})
			return
		}
		c := choice(d)
		if d.finish != "" {
			if c["finish_reason"] == nil { // choice may say why itself ("tool_calls")
				c["finish_reason"] = d.finish
			}
			finals[d.seq] = c
			return
		}
		ev.send(chunk(c))
	}
	generated := make([]int, len(hs))
	var wg sync.WaitGroup
	for k, h := range hs {
		wg.Go(func() {
			defer cancels[k]()
			generated[k] = len(s.follow(k, g, h, cancels[k], emit).tokens)
		})
	}
	wg.Wait()
	promptTokens := 0
	for _, p := range g.prompts {
		promptTokens += len(p)
	}
	total := 0
	for _, n := range generated {
		total += n
	}
	u := usage(promptTokens, total)
	var last map[string]any
	for _, c := range finals {
		if c == nil {
			continue
		}
		if last != nil {
			ev.send(chunk(last))
		}
		last = c
	}
	separate := opts != nil && opts.IncludeUsage
	if last != nil {
		final := chunk(last)
		if !separate {
			final["usage"] = u
		}
		ev.send(final)
	}
	if separate {
		final := chunk(nil)
		final["usage"] = u
		ev.send(final)
	}
	ev.done()
}
