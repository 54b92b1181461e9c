package spec

import (
	"errors"
	"testing"
)

func TestCards(t *testing.T) {
	cases := []struct {
		arch      string
		serving   Serving
		shardable bool
	}{
		{"bert", Encoder, false}, {"marian", EncoderDecoder, false},
		{"bloom", Causal, true}, {"llama", Causal, true}, {"chatglm", Causal, true},
	}
	for _, tc := range cases {
		c, err := CardOf(tc.arch)
		if err != nil {
			t.Fatal(err)
		}
		if c.Serving != tc.serving || c.Shardable() != tc.shardable {
			t.Errorf("%s: serving %s shardable %v, want %s %v", tc.arch, c.Serving, c.Shardable(), tc.serving, tc.shardable)
		}
		if got := (&Spec{Arch: tc.arch}).Serving(); got != tc.serving {
			t.Errorf("%s spec serving %s", tc.arch, got)
		}
	}
	if _, err := CardOf("gpt9"); !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("CardOf(gpt9) = %v", err)
	}
}
