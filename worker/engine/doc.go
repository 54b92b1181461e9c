// Package engine runs a model inside one process. Generator drives a
// causal LM through prefill and decode for one sequence at a time (the
// loop behind `tessera generate` and `tessera logits`); Translate does the
// same for an encoder-decoder. Pipeline runs a model sharded by a plan in
// one process, every rank its own model, the ranks of a stage reducing
// through a transport.LocalGroup; it is a model.CausalLM, so a Generator
// drives it like an unsharded model. Sampling policy comes in through the
// Sampler interface, so the coordinator's samplers plug in without the
// worker importing them.
//
// In a cluster, each worker runs one rank with worker/server's Runner
// instead.
package engine
