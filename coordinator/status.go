package coordinator

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/registry"
)

// Status is a cluster as etcd and its workers describe it.
type Status struct {
	Cluster string                  `json:"cluster"`
	Leader  string                  `json:"leader"`
	Workers []*tesserav1.WorkerInfo `json:"workers"`
	// Health is each worker's answer to its Health RPC, by id.
	Health      map[string]string `json:"health"`
	PlanVersion uint64            `json:"plan_version"`
	// Plan is the current plan's JSON (null when none); PlanErr says why
	// there is none.
	Plan    json.RawMessage `json:"plan"`
	PlanErr error           `json:"-"`
	// Planning is the leader's last planning report: the workers it left
	// out, with the reason, and why the last re-plan failed.
	Planning *tesserav1.PlanningReport `json:"planning"`
}

// ReadStatus reads a cluster's leader, workers and plan from etcd and asks
// each worker for its health (mutual TLS with workerTLS when set).
func ReadStatus(ctx context.Context, cli *clientv3.Client, cluster string, workerTLS *tls.Config) (*Status, error) {
	leader, _ := registry.Leader(ctx, cli, cluster)
	ws, _, err := registry.Workers(ctx, cli, cluster)
	if err != nil {
		return nil, err
	}
	st := &Status{Cluster: cluster, Leader: leader, Workers: ws, Health: map[string]string{}}
	dial := WorkerDialer(workerTLS)
	for _, w := range ws {
		st.Health[w.Id] = workerHealth(ctx, dial, w.Address)
	}
	st.PlanVersion, st.Plan, st.PlanErr = registry.CurrentPlan(ctx, cli, cluster)
	if st.Planning, err = registry.Report(ctx, cli, cluster); err != nil {
		return nil, err
	}
	return st, nil
}

// workerHealth asks a worker's Health RPC, briefly.
func workerHealth(ctx context.Context, dial func(string) (tesserav1.WorkerClient, io.Closer, error), addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, closer, err := dial(addr)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer closer.Close()
	h, err := c.Health(ctx, &tesserav1.HealthRequest{})
	if err != nil {
		return "unreachable"
	}
	if h.PlanVersion > 0 {
		return fmt.Sprintf("%s (plan v%d)", h.Status, h.PlanVersion)
	}
	return h.Status.String()
}
