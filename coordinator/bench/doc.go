// Package bench load-tests an OpenAI-compatible completions endpoint:
// requests at a fixed concurrency (or arrival rate), streaming, with
// throughput and time-to-first-token and inter-token latency percentiles.
// `tessera bench` is its command.
package bench
