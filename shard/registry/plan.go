package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Plan is one published plan version.
type Plan struct {
	Version uint64
	JSON    []byte
}

// PutPlan publishes plan version v: it writes PlanKey(v) = planJSON and
// CurrentPlanKey = v in one transaction that commits only while l still
// holds the leader key and no other plan was published since it read the
// current version. It fails with ErrNotLeader when the leadership is lost,
// ErrStalePlan when v is not newer than the current version, ErrInvalid
// for v == 0 or a body that is not JSON. Once v is current, plan keys older
// than the version it replaced are deleted: readers follow the current
// key, and a long-lived cluster re-plans on every membership change.
func (l *Leadership) PutPlan(ctx context.Context, v uint64, planJSON []byte) error {
	if v == 0 {
		return fmt.Errorf("%w: plan version 0", ErrInvalid)
	}
	if !json.Valid(planJSON) {
		return fmt.Errorf("%w: plan %d is not valid JSON", ErrInvalid, v)
	}
	cur := CurrentPlanKey(l.cluster)
	for attempt := 0; ; attempt++ {
		resp, err := l.cli.Get(ctx, cur)
		if err != nil {
			return fmt.Errorf("registry: read current plan: %w", err)
		}
		var curMod int64
		var prev uint64 // the version v replaces
		if len(resp.Kvs) == 1 {
			curMod = resp.Kvs[0].ModRevision
			cv, err := strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
			if err == nil && v <= cv {
				return fmt.Errorf("%w: %d, current is %d", ErrStalePlan, v, cv)
			}
			prev = cv
		}
		tr, err := l.cli.Txn(ctx).
			If(
				clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev),
				clientv3.Compare(clientv3.ModRevision(cur), "=", curMod),
			).
			Then(
				clientv3.OpPut(PlanKey(l.cluster, v), string(planJSON)),
				clientv3.OpPut(cur, strconv.FormatUint(v, 10)),
			).
			Else(clientv3.OpGet(l.key)).
			Commit()
		if err != nil {
			return fmt.Errorf("registry: publish plan %d: %w", v, err)
		}
		if tr.Succeeded {
			l.prunePlans(ctx, prev)
			return nil
		}
		kvs := tr.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || kvs[0].CreateRevision != l.rev {
			return fmt.Errorf("%w: %s lost the leadership of %s", ErrNotLeader, l.id, l.cluster)
		}
		if attempt >= 3 {
			return fmt.Errorf("registry: publish plan %d: current plan keeps changing", v)
		}
	}
}

// prunePlans deletes the plan keys older than prev, the version the new
// current plan replaced; prev itself stays, since a watcher that read the
// current key just before the switch may still be fetching it. It is best
// effort: a key it misses goes at the next publication.
func (l *Leadership) prunePlans(ctx context.Context, prev uint64) {
	prefix := Prefix(l.cluster) + "plan/"
	resp, err := l.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		v, err := strconv.ParseUint(string(kv.Key[len(prefix):]), 10, 64)
		if err != nil || v >= prev { // the current key, prev, or the new plan
			continue
		}
		if _, err := l.cli.Delete(ctx, string(kv.Key)); err != nil {
			return
		}
	}
}

// CurrentPlan returns the current plan version and its JSON, or an error
// wrapping ErrNoPlan.
func CurrentPlan(ctx context.Context, cli *clientv3.Client, cluster string) (uint64, []byte, error) {
	if err := checkName("cluster", cluster); err != nil {
		return 0, nil, err
	}
	resp, err := cli.Get(ctx, CurrentPlanKey(cluster))
	if err != nil {
		return 0, nil, fmt.Errorf("registry: read current plan of %s: %w", cluster, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil, fmt.Errorf("%w: cluster %s", ErrNoPlan, cluster)
	}
	p, err := readPlan(ctx, cli, cluster, resp.Kvs[0].Value)
	if err != nil {
		return 0, nil, err
	}
	return p.Version, p.JSON, nil
}

func readPlan(ctx context.Context, cli *clientv3.Client, cluster string, cur []byte) (Plan, error) {
	v, err := strconv.ParseUint(string(cur), 10, 64)
	if err != nil {
		return Plan{}, fmt.Errorf("%w: current plan of %s is %q", ErrInvalid, cluster, cur)
	}
	// Plan keys are written once and never change, so any revision works.
	resp, err := cli.Get(ctx, PlanKey(cluster, v))
	if err != nil {
		return Plan{}, fmt.Errorf("registry: read plan %d of %s: %w", v, cluster, err)
	}
	if len(resp.Kvs) == 0 {
		return Plan{}, fmt.Errorf("%w: plan %d of %s is missing", ErrNoPlan, v, cluster)
	}
	return Plan{Version: v, JSON: resp.Kvs[0].Value}, nil
}

// WatchPlan emits the current plan (when there is one) and then every newly
// published version, in order of publication. A slow reader sees only the
// latest version. The channel is closed when ctx ends or the client closes.
func WatchPlan(ctx context.Context, cli *clientv3.Client, cluster string) (<-chan Plan, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	cur := CurrentPlanKey(cluster)
	resp, err := cli.Get(ctx, cur)
	if err != nil {
		return nil, fmt.Errorf("registry: read current plan of %s: %w", cluster, err)
	}
	var pending *Plan
	if len(resp.Kvs) == 1 {
		if p, err := readPlan(ctx, cli, cluster, resp.Kvs[0].Value); err == nil {
			pending = &p
		}
	}
	rev := resp.Header.Revision
	var last uint64 // the newest version queued or sent
	if pending != nil {
		last = pending.Version
	}
	out := make(chan Plan)
	go func() {
		defer close(out)
		for ctx.Err() == nil && cli.Ctx().Err() == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := cli.Watch(wctx, cur, clientv3.WithRev(rev+1))
		watching:
			for {
				var send chan Plan
				var p Plan
				if pending != nil {
					send, p = out, *pending
				}
				select {
				case <-ctx.Done():
					cancel()
					return
				case send <- p:
					pending = nil
				case resp, ok := <-wch:
					if !ok || resp.Err() != nil || resp.Canceled {
						break watching
					}
					for _, ev := range resp.Events {
						if ev.Type != clientv3.EventTypePut {
							continue
						}
						if p, err := readPlan(ctx, cli, cluster, ev.Kv.Value); err == nil && p.Version > last {
							pending, last = &p, p.Version
						}
						rev = ev.Kv.ModRevision
					}
				}
			}
			cancel()
			// Re-read the current key and watch again from there.
			retryUntil(ctx, cli, func() error {
				resp, err := cli.Get(ctx, cur)
				if err != nil {
					return err
				}
				rev = resp.Header.Revision
				if len(resp.Kvs) == 1 {
					if p, err := readPlan(ctx, cli, cluster, resp.Kvs[0].Value); err == nil && p.Version > last {
						pending, last = &p, p.Version
					}
				}
				return nil
			})
		}
	}()
	return out, nil
}
