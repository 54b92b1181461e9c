package local

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tessera-llm/tessera/coordinator"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker"
)

// ClusterName is the cluster name a local cluster uses.
const ClusterName = "local"

// Options configure a local cluster. Cluster names, ids and listen
// addresses of the nodes are set here; the rest of Coordinator and
// Worker is used as given.
type Options struct {
	Coordinator coordinator.Options
	Worker      worker.Options
	// Workers is how many workers start (0: none; external ones join).
	Workers int
	// DataDir is etcd's data directory (default: a temporary one,
	// removed on Close).
	DataDir string
}

// Cluster is a running local cluster.
type Cluster struct {
	// API is the coordinator's HTTP address; Etcd and NATS the URLs
	// external workers join with.
	API, Etcd, NATS string
	closers         []func()
}

// Close stops everything in reverse order of start and waits.
func (c *Cluster) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// Start runs etcd, NATS, o.Workers workers (ids worker-0, worker-1, …,
// on ephemeral ports) and a coordinator.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	lc := &Cluster{}
	defer func() {
		if err != nil {
			lc.Close()
		}
	}()
	data := o.DataDir
	if data == "" {
		if data, err = os.MkdirTemp("", "tessera-etcd-"); err != nil {
			return nil, err
		}
		lc.closers = append(lc.closers, func() { os.RemoveAll(data) })
	}
	_, etcdURL, stopEtcd, err := registry.Embedded(data)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, stopEtcd)
	ns, natsURL, err := transport.EmbeddedNATS(&server.Options{})
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, func() { ns.Shutdown(); ns.WaitForShutdown() })
	lc.Etcd, lc.NATS = etcdURL, natsURL
	for i := range o.Workers {
		cli, nc, err := lc.dial(ctx)
		if err != nil {
			return nil, err
		}
		wo := o.Worker
		wo.Cluster, wo.ID, wo.Listen = ClusterName, fmt.Sprintf("worker-%d", i), worker.DefaultListen
		w, err := worker.Start(ctx, cli, nc, wo)
		if err != nil {
			return nil, err
		}
		lc.closers = append(lc.closers, w.Close)
	}
	cli, nc, err := lc.dial(ctx)
	if err != nil {
		return nil, err
	}
	co := o.Coordinator
	co.Cluster, co.ID = ClusterName, "local-coordinator"
	c, err := coordinator.Start(ctx, cli, nc, co)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, c.Close)
	lc.API = c.Addr()
	return lc, nil
}

// dial opens a node's own etcd and NATS clients, closed after the node.
func (lc *Cluster) dial(ctx context.Context) (*clientv3.Client, *nats.Conn, error) {
	cli, err := registry.Dial(ctx, lc.Etcd)
	if err != nil {
		return nil, nil, err
	}
	nc, err := transport.Connect(lc.NATS)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	lc.closers = append(lc.closers, func() { nc.Close(); cli.Close() })
	return cli, nc, nil
}
