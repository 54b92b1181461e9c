// Package local runs a whole Tessera cluster in one process, all on
// loopback: an embedded etcd and NATS, worker.Nodes and a
// coordinator.Node, each with its own clients as separate processes would
// have. `tessera local` and in-process end-to-end tests use it.
//
// It is the one package that imports both coordinator and worker (those
// two never import each other), so in the import order it stands beside
// cmd: cmd -> local -> coordinator, worker.
package local
