// Package coordinator assembles a coordinator process, as etcd's
// server/embed does for etcd: Start takes dialed etcd and NATS clients,
// TLS configs and Options (never flags) and runs the election and cluster
// manager (coordinator/cluster), the scheduler, the OpenAI-compatible HTTP
// API and the gRPC services until Close.
//
// Policy that follows from the model lives here: the KV cache's block
// count, and no prefix caching for 2-D RoPE (a prefix LM's early keys
// depend on its whole prefix, so two prompts never share them).
//
// Encoder models (BERT) are served by an engine in this process rather
// than planned over workers: an encoder is small, does not shard, and
// answers a request in one forward pass, so placing it on a worker would
// add a hop and a placement protocol for nothing today. The engine comes
// in through Options.Encoders, a loader the caller supplies (cmd/tessera
// wires worker.LoadEncoder); this package never imports worker code. A
// worker RPC for encoders is the way to grow when encoders need GPUs.
package coordinator
