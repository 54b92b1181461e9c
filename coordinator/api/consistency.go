package api

import (
	"regexp"
	"strings"
)

// vote is self-consistency's outcome: each chain's answer (the pattern's
// first capture group, or the whole match without groups), the vote
// counts, and the majority answer (ties go to the answer reached first).
// Chains without an answer do not vote.
func vote(re *regexp.Regexp, chains []*sequence) map[string]any {
	votes := map[string]int{}
	var order []string
	list := make([]any, len(chains))
	for i, q := range chains {
		var answer any
		if m := re.FindStringSubmatch(q.text); m != nil {
			a := m[0]
			if len(m) > 1 {
				a = m[1]
			}
			a = strings.TrimSpace(a)
			if votes[a] == 0 {
				order = append(order, a)
			}
			votes[a]++
			answer = a
		}
		list[i] = map[string]any{"index": i, "text": q.text, "answer": answer, "finish_reason": q.finish}
	}
	var winner any
	most := 0
	for _, a := range order {
		if votes[a] > most {
			winner, most = a, votes[a]
		}
	}
	return map[string]any{"answer": winner, "votes": votes, "samples": len(chains), "chains": list}
}
