// Package cluster is the coordinator's view of its workers.
//
// The control plane (cluster.go, planning.go, load.go): the leader (etcd
// election) watches worker registrations, plans the model over them,
// stores the plan in etcd and has every rank load its shard over gRPC.
// When workers join or leave it re-plans.
//
// The data plane (step.go): steps run on the serving plan through the
// transport, and the last stage's top-k partials are gathered per logit
// row. Steps wait while a plan loads, and the scheduler replays whatever a
// change interrupted.
package cluster
