package main

import (
	"io"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/coordinator/cluster"
	"github.com/tessera-llm/tessera/coordinator/console"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// mountConsole serves the operator console at /console/ on the API's
// listener, behind the API's key; the caller runs it (Run) beside the
// cluster manager.
func mountConsole(c coordinatorConfig, a *api.Server, metrics *api.Metrics, mgr *cluster.Manager, cli *clientv3.Client,
	dial func(string) (tesserav1.WorkerClient, io.Closer, error)) *console.Console {
	con := console.New(console.Config{Cluster: c.cluster, Model: c.modelName, ID: c.id, Etcd: cli, Metrics: metrics.Registry(),
		Leader: mgr.Leader, Ready: mgr.Ready, Dial: dial, RequireKey: a.RequireKey, Logger: c.log})
	a.Mount("/console", con)
	a.Mount("/console/", con)
	return con
}
