package spec

import (
	"fmt"
	"math"
	"slices"
)

// parseRope reads a LLaMA-family rope configuration (rope_theta and
// rope_scaling, or transformers ≥ 5's rope_parameters) into s, whose
// HeadDim and MaxPositions are set. Each rope_type computes the pair
// frequencies as transformers' modeling_rope_utils does:
//
//   - default: Theta^(-2i/d);
//   - linear: default / factor;
//   - dynamic: NTK scaling grows the base only for sequences longer than
//     max_position_embeddings, which Tessera refuses, so it is default;
//   - llama3: low frequencies divided by factor, high ones kept, a smooth
//     blend between (low_freq_factor, high_freq_factor,
//     original_max_position_embeddings);
//   - yarn: interpolated and extrapolated frequencies blended by a linear
//     ramp over the dims between the beta_fast and beta_slow corrections,
//     and cos/sin scaled by attention_factor (0.1·ln(factor) + 1 unless
//     given), which s.RopeMscale carries.
//
// Anything else is an error naming the field.
func parseRope(c Config, s *Spec) error {
	r := &Reader{C: c}
	s.RopeTheta = r.Float(10000, "rope_theta")
	s.RopeMscale = 1
	field := "rope_scaling"
	rs, _ := c["rope_scaling"].(map[string]any)
	if rp, ok := c["rope_parameters"].(map[string]any); ok {
		field, rs = "rope_parameters", rp
	} else if v, ok := c["rope_scaling"]; ok && v != nil && rs == nil {
		return fmt.Errorf("%w: rope_scaling must be an object, got %v", ErrInvalidConfig, v)
	}
	if r.Err != nil || rs == nil {
		return r.Err
	}
	p := &Reader{C: rs}
	s.RopeTheta = p.Float(s.RopeTheta, "rope_theta")
	kind := p.String("", "rope_type")
	if kind == "" {
		kind = p.String("default", "type")
	}
	if p.Err != nil {
		return p.Err
	}
	known := map[string][]string{
		"default": nil,
		"linear":  {"factor"},
		"dynamic": {"factor", "original_max_position_embeddings"},
		"llama3":  {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
		"yarn":    {"factor", "attention_factor", "beta_fast", "beta_slow", "original_max_position_embeddings", "truncate"},
	}
	allowed, ok := known[kind]
	if !ok {
		return fmt.Errorf("%w: %s.rope_type %q is not supported (default, linear, dynamic, llama3, yarn)", ErrInvalidConfig, field, kind)
	}
	for k, v := range rs {
		if k == "rope_type" || k == "type" || k == "rope_theta" || v == nil || slices.Contains(allowed, k) {
			continue
		}
		return fmt.Errorf("%w: %s.%s is not supported for rope_type %q", ErrInvalidConfig, field, k, kind)
	}
	if kind == "default" || kind == "dynamic" {
		return nil
	}
	required := allowed[:1] // factor
	if kind == "llama3" {
		required = allowed
	}
	for _, k := range required {
		if rs[k] == nil {
			return fmt.Errorf("%w: %s.%s is required for rope_type %q", ErrInvalidConfig, field, k, kind)
		}
	}
	factor := p.Float(0, "factor")
	if p.Err == nil && factor < 1 {
		return fmt.Errorf("%w: %s.factor must be at least 1, got %g", ErrInvalidConfig, field, factor)
	}
	dim := s.HeadDim
	inv := make([]float64, dim/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(s.RopeTheta, float64(2*i)/float64(dim))
	}
	switch kind {
	case "linear":
		for i := range inv {
			inv[i] /= factor
		}
	case "llama3":
		low, high := p.Float(0, "low_freq_factor"), p.Float(0, "high_freq_factor")
		old := float64(p.Int("original_max_position_embeddings"))
		if p.Err == nil && high <= low {
			return fmt.Errorf("%w: %s.high_freq_factor %g must exceed low_freq_factor %g", ErrInvalidConfig, field, high, low)
		}
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < old/high:
			case wavelen > old/low:
				inv[i] = f / factor
			default:
				smooth := (old/wavelen - low) / (high - low)
				inv[i] = (1-smooth)*f/factor + smooth*f
			}
		}
	case "yarn":
		orig := float64(p.IntOr(s.MaxPositions, "original_max_position_embeddings"))
		fast, slow := p.Float(32, "beta_fast"), p.Float(1, "beta_slow")
		s.RopeMscale = p.Float(0.1*math.Log(factor)+1, "attention_factor")
		if !p.Bool(true, "truncate") {
			return fmt.Errorf("%w: %s.truncate=false is not supported", ErrInvalidConfig, field)
		}
		if p.Err == nil && orig <= 0 {
			return fmt.Errorf("%w: yarn needs max_position_embeddings or %s.original_max_position_embeddings", ErrInvalidConfig, field)
		}
		corr := func(rot float64) float64 {
			return float64(dim) * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(s.RopeTheta))
		}
		lo, hi := max(math.Floor(corr(fast)), 0), min(math.Ceil(corr(slow)), float64(dim-1))
		if lo == hi {
			hi += 0.001
		}
		for i, f := range inv {
			ramp := min(max((float64(i)-lo)/(hi-lo), 0), 1)
			extrapolate := 1 - ramp
			inv[i] = f/factor*(1-extrapolate) + f*extrapolate
		}
	}
	if p.Err != nil {
		return fmt.Errorf("%s: %w", field, p.Err)
	}
	s.RopeInvFreq = make([]float32, len(inv))
	for i, f := range inv {
		s.RopeInvFreq[i] = float32(f)
	}
	return nil
}
