package registry

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Member is a worker's membership of a cluster: its registration, made
// again whenever the lease is lost (etcd unreachable for longer than the
// TTL), until Close. Every registration goes through Register, so the
// member never takes an id that a live worker holds.
type Member struct {
	registered atomic.Bool
	cancel     context.CancelFunc
	done       chan struct{}
}

// Join registers w and keeps it registered until Close or ctx ends. The
// first registration happens before Join returns: an id held by a live
// worker fails here with ErrIDTaken.
func Join(ctx context.Context, cli *clientv3.Client, cluster string, w *tesserav1.WorkerInfo, ttl time.Duration, log *slog.Logger) (*Member, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg, err := Register(ctx, cli, cluster, w, ttl)
	if err != nil {
		return nil, err
	}
	logTakeover(log, w, reg)
	ctx, cancel := context.WithCancel(ctx)
	m := &Member{cancel: cancel, done: make(chan struct{})}
	m.registered.Store(true)
	go m.keep(ctx, cli, cluster, w, ttl, log, reg)
	return m, nil
}

func logTakeover(log *slog.Logger, w *tesserav1.WorkerInfo, reg *Registration) {
	if prev := reg.TookOver(); prev != "" {
		log.Warn("took over a worker id whose lease expired", "id", w.GetId(), "previous", prev)
	}
}

// keep registers again whenever reg's lease is lost, and revokes the
// current registration when ctx ends.
func (m *Member) keep(ctx context.Context, cli *clientv3.Client, cluster string, w *tesserav1.WorkerInfo, ttl time.Duration, log *slog.Logger, reg *Registration) {
	defer close(m.done)
	defer func() { _ = reg.Close() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reg.Done():
		}
		if ctx.Err() != nil {
			return
		}
		m.registered.Store(false)
		log.Warn("registration lost; registering again", "id", w.GetId(), "err", reg.Err())
		// Our own lease may outlive the keepalive that gave up on it: the
		// entry then moves to the new lease without being deleted, and
		// the old lease is revoked after (it holds nothing else).
		for {
			r, err := register(ctx, cli, cluster, w, ttl, reg.Lease())
			if err == nil {
				_ = reg.Close()
				reg = r
				logTakeover(log, w, reg)
				m.registered.Store(true)
				break
			}
			if errors.Is(err, ErrIDTaken) {
				log.Error("cannot register again: the id is taken", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// Registered reports whether the worker is registered now.
func (m *Member) Registered() bool { return m.registered.Load() }

// Close stops keeping the registration and revokes it, which deletes the
// worker's entry at once.
func (m *Member) Close() {
	m.cancel()
	<-m.done
}
