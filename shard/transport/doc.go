// Package transport moves a Tessera cluster's data plane: steps,
// activations between pipeline stages, all-reduce partial sums inside a
// stage, and step results, as tesserav1.Frame messages.
//
// The Transport interface is small on purpose (Publish, Subscribe with a
// handler, MaxPayload, Close); InProcess carries it between ranks of one
// process and NATS (NewNATS) between processes. Give each peer
// and direction its own nats.Conn (PublishConn), keep subscriptions
// persistent, and tune the GC (GOGC high or off with GOMEMLIMIT): it cuts
// publish p99 several-fold.
//
// On top of it:
//   - Subjects names the subjects of a plan version:
//     tessera.<cluster>.<plan>.s<stage>.r<rank>.{act,reduce,result} and
//     tessera.<cluster>.<plan>.step; every subject names its sender.
//   - SendTensor splits a tensor into chunks that fit MaxPayload; SendProto
//     sends a Step or StepResult the same way.
//   - Receiver reassembles chunks per Key (plan, step, stage, rank, kind,
//     seq), hands tensors out by key (Wait) or in completion order (Next),
//     and drops and counts malformed, stale and excess frames; no frame can
//     crash it.
//   - Group.AllReduce sums a []float32 across the ranks of a stage so that
//     every rank gets bit-identical results; LocalGroup does the same for
//     ranks that share one process, through memory.
//   - Mesh.AllReduce does what Group does without a broker: a Hub per
//     worker accepts persistent TCP connections (mutual TLS when
//     configured) from the stage's other ranks, and each rank sends its
//     partial straight to the others. Group and Mesh are both a Reducer.
//
// Every blocking call takes a context; when it ends the call returns
// ctx.Err() (context.DeadlineExceeded for a step deadline) and holds
// nothing. Subscriptions end with their context, Close, or the transport's
// Close, and leave no goroutines behind.
//
// EmbeddedNATS starts a loopback NATS server for `tessera local` and tests;
// Connect dials one and fails fast with ErrUnreachable.
package transport
