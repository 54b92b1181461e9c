package coordinator

import (
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/coordinator/cluster"
	"github.com/tessera-llm/tessera/coordinator/console"
)

// mountConsole serves the operator console at /console/ on the API's
// listener, behind the API's key; the caller runs it (Run) beside the
// cluster manager.
func mountConsole(o Options, a *api.Server, metrics *api.Metrics, mgr *cluster.Manager, cli *clientv3.Client) *console.Console {
	con := console.New(console.Config{Cluster: o.Cluster, Model: o.ModelName, ID: o.ID, Etcd: cli, Metrics: metrics.Registry(),
		Leader: mgr.Leader, Ready: mgr.Ready, Dial: WorkerDialer(o.WorkerTLS), RequireKey: a.RequireKey, Logger: o.Logger})
	a.Mount("/console", con)
	a.Mount("/console/", con)
	return con
}
