// Package worker assembles a worker process, as etcd's server/embed does
// for etcd: Start takes dialed etcd and NATS clients, a backend, a TLS
// config and Options (never flags), binds the gRPC listener, registers the
// bound address in etcd through registry.Join, and serves the Worker
// service (worker/server), its shard's steps and the /health, /ready and
// /metrics probes until Close.
//
// Several workers may run on one host, one per GPU being the usual shape:
// the default listeners are ephemeral ports on loopback, the registered
// address is the one actually bound, and the default id is the host name
// with the device and port appended. An id a live worker holds is refused
// with registry.ErrIDTaken.
//
// LoadEncoder is the engine a coordinator uses to serve an encoder model
// (see its doc); it lives here, beside the model code it runs, because the
// coordinator packages never import worker packages.
package worker
