package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A server streaming like one whose model has no tokenizer.json: every
// chunk's text is empty and only token ids say what was generated.
func TestCountsTokensWithoutText(t *testing.T) {
	cases := []struct {
		name      string
		usage     bool
		text      string
		wantPerRq int
	}{
		{"usage", true, "", 4},
		{"token ids only", false, "", 4},
		{"text only", false, "x", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				ids := `,"token_ids":[7,8]`
				if tc.text != "" {
					ids = ""
				}
				for range 2 {
					fmt.Fprintf(w, "data: {\"choices\":[{\"text\":%q%s}]}\n\n", tc.text, ids)
				}
				if tc.usage {
					fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"completion_tokens\":4}}\n\n")
				}
				fmt.Fprint(w, "data: [DONE]\n\n")
			}))
			defer srv.Close()
			rep, err := Run(context.Background(), Config{URL: srv.URL, Model: "m", Concurrency: 2, Requests: 3,
				PromptTokens: 4, OutputTokens: 4, Timeout: 5 * time.Second}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Failed != 0 {
				t.Fatalf("%d failed: %s", rep.Failed, rep.FirstError)
			}
			if got := rep.OutputTokS * rep.DurationS; got < float64(3*tc.wantPerRq)-0.01 || got > float64(3*tc.wantPerRq)+0.01 {
				t.Errorf("counted %.2f output tokens, want %d", got, 3*tc.wantPerRq)
			}
		})
	}
}
