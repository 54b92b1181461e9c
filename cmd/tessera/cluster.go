package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
)

// clusterFlags are what every cluster process shares.
type clusterFlags struct {
	cluster, etcd, nats string
	sec                 securityFlags
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cluster, "cluster", "default", "cluster name: the etcd prefix and NATS subject token this cluster uses")
	fs.StringVar(&c.etcd, "etcd", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	fs.StringVar(&c.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	c.sec.register(fs)
}

// clients are a process's etcd and NATS connections.
type clients struct {
	etcd *clientv3.Client
	nats *nats.Conn
}

func (c clients) Close() {
	c.nats.Close()
	c.etcd.Close()
}

// dial connects to etcd and NATS, failing fast with errors that name the
// addresses.
func (c *clusterFlags) dial(ctx context.Context) (clients, error) {
	etcdOpts, err := c.sec.etcdOptions()
	if err != nil {
		return clients{}, err
	}
	natsOpts, err := c.sec.natsOptions()
	if err != nil {
		return clients{}, err
	}
	cli, err := registry.Dial(ctx, c.etcd, etcdOpts...)
	if err != nil {
		return clients{}, err
	}
	nc, err := transport.Connect(c.nats, natsOpts...)
	if err != nil {
		cli.Close()
		return clients{}, err
	}
	return clients{etcd: cli, nats: nc}, nil
}

func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// untilSignal waits for SIGINT or SIGTERM.
func untilSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
