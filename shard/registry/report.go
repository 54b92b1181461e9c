package registry

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// ReportKey holds the leader's last planning report.
func ReportKey(cluster string) string { return Prefix(cluster) + "planning" }

// PutReport stores the leader's planning report (which workers the plan
// leaves out and why, and why the last re-plan failed) for `tessera
// status`. It is written under the leader's session lease, so it goes
// with the leader, and only while l still holds the leader key
// (ErrNotLeader otherwise).
func (l *Leadership) PutReport(ctx context.Context, r *tesserav1.PlanningReport) error {
	val, err := protojson.Marshal(r)
	if err != nil {
		return fmt.Errorf("registry: encode planning report: %w", err)
	}
	tr, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)).
		Then(clientv3.OpPut(ReportKey(l.cluster), string(val), clientv3.WithLease(l.session.Lease()))).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: store planning report: %w", err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: %s lost the leadership of %s", ErrNotLeader, l.id, l.cluster)
	}
	return nil
}

// Report reads the current leader's planning report; an empty report when
// there is none.
func Report(ctx context.Context, cli *clientv3.Client, cluster string) (*tesserav1.PlanningReport, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, ReportKey(cluster))
	if err != nil {
		return nil, fmt.Errorf("registry: read planning report of %s: %w", cluster, err)
	}
	r := new(tesserav1.PlanningReport)
	if len(resp.Kvs) == 0 {
		return r, nil
	}
	if err := unmarshal.Unmarshal(resp.Kvs[0].Value, r); err != nil {
		return nil, fmt.Errorf("%w: planning report of %s: %w", ErrInvalid, cluster, err)
	}
	return r, nil
}
