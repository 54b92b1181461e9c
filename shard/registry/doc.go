// Package registry keeps a Tessera cluster's state in etcd: worker
// registrations, coordinator leader election and the versioned shard plan.
//
// Keys (cluster names and worker ids must not contain '/' or spaces):
//
//	/tessera/<cluster>/workers/<id>    WorkerInfo as protojson, under the worker's lease
//	/tessera/<cluster>/leader/<lease>  concurrency.Election keys; the oldest is the leader
//	/tessera/<cluster>/plan/<version>  plan JSON, written once by the leader
//	/tessera/<cluster>/plan/current    the current version, decimal
//	/tessera/<cluster>/planning        the leader's PlanningReport as protojson, under its session lease
//
// A worker's entry is owned by its lease: Register creates it only where no
// entry exists (compare on the key in the same transaction) and only that
// lease's revocation or expiry deletes it, so no other process can replace
// or remove it. An id held by a live worker is refused with ErrIDTaken; an
// id whose holder stopped renewing is taken over when its lease runs out.
// A worker process calls Join, which registers and registers again whenever
// the lease is lost (etcd unreachable for longer than the TTL), through the
// same rules. A coordinator calls Campaign, which blocks until it
// leads; the leader watches the workers with Watch and publishes plans with
// Leadership.PutPlan, which commits only while the leadership holds; it
// stores what its planning left out, and why, with Leadership.PutReport
// (read with Report). Workers and standbys follow plans with WatchPlan or
// read one with CurrentPlan.
//
// Dial connects and fails fast with ErrUnreachable when no member answers.
// Embedded starts a single-member etcd on loopback for `tessera local` and
// tests. All errors wrap the package's sentinel errors where one applies.
//
// A typical worker:
//
//	cli, err := registry.Dial(ctx, *etcdFlag)
//	...
//	m, err := registry.Join(ctx, cli, "prod", info, 5*time.Second, log)
//	if errors.Is(err, registry.ErrIDTaken) { /* another live worker has the id */ }
//	defer m.Close() // revokes: the entry goes at once
//
// A typical coordinator:
//
//	lead, err := registry.Campaign(ctx, cli, "prod", hostname)
//	workers, err := registry.Watch(ctx, cli, "prod")
//	for {
//		select {
//		case ws := <-workers:
//			plan := planner.Plan(ws)
//			err := lead.PutPlan(ctx, nextVersion, plan)
//		case <-lead.Done():
//			// lost the leadership: stop serving as leader, campaign again
//		}
//	}
package registry
