package spec

import (
	"encoding/json"
	"testing"
)

func TestMatch(t *testing.T) {
	r := Rule{Pattern: "transformer.h.{layer}.self_attention.dense.bias"}
	cases := []struct {
		name  string
		layer int
		ok    bool
	}{
		{"transformer.h.0.self_attention.dense.bias", 0, true},
		{"transformer.h.17.self_attention.dense.bias", 17, true},
		{"transformer.h.01.self_attention.dense.bias", 0, false},
		{"transformer.h.-1.self_attention.dense.bias", 0, false},
		{"transformer.h.+1.self_attention.dense.bias", 0, false},
		{"transformer.h..self_attention.dense.bias", 0, false},
		{"transformer.h.1.self_attention.dense.weight", 0, false},
		{"transformer.h.x.self_attention.dense.bias", 0, false},
	}
	for _, tc := range cases {
		l, ok := r.Match(tc.name)
		if ok != tc.ok || (ok && l != tc.layer) {
			t.Errorf("Match(%s) = %d %v, want %d %v", tc.name, l, ok, tc.layer, tc.ok)
		}
	}
	if got := r.Name(5); got != "transformer.h.5.self_attention.dense.bias" {
		t.Errorf("Name(5) = %s", got)
	}
	if l, ok := (Rule{Pattern: "lm_head.weight"}).Match("lm_head.weight"); !ok || l != -1 {
		t.Errorf("layerless match = %d %v", l, ok)
	}
}

func TestEnumText(t *testing.T) {
	r := Rule{Pattern: "x", Kind: RowParallel, Axis: AxisMLP, Bias: true, Place: LastStage}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Rule
	if err := json.Unmarshal(raw, &back); err != nil || back != r {
		t.Errorf("round trip %s -> %+v, %v", raw, back, err)
	}
	if err := json.Unmarshal([]byte(`{"Kind":"sideways"}`), &back); err == nil {
		t.Error("unknown kind accepted")
	}
}
