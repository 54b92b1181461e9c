package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease is what etcd says now about the lease a worker is registered
// under: its granted TTL and the time left. A worker's keepalive renews
// it about every TTL/3, so TTL - Remaining is roughly the time since the
// last renewal (etcd counts whole seconds).
type Lease struct {
	TTL, Remaining time.Duration
}

// WorkerLeases returns the lease of every registered worker, by id. A
// worker whose lease expires between the two reads is left out.
func WorkerLeases(ctx context.Context, cli *clientv3.Client, cluster string) (map[string]Lease, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	prefix := WorkersPrefix(cluster)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: list worker leases of %s: %w", cluster, err)
	}
	out := make(map[string]Lease, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		id := strings.TrimPrefix(string(kv.Key), prefix)
		if kv.Lease == 0 || id == "" {
			continue
		}
		ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil {
			return nil, fmt.Errorf("registry: lease of worker %s: %w", id, err)
		}
		if ttl.TTL < 0 { // expired since the list
			continue
		}
		out[id] = Lease{TTL: time.Duration(ttl.GrantedTTL) * time.Second, Remaining: time.Duration(ttl.TTL) * time.Second}
	}
	return out, nil
}
