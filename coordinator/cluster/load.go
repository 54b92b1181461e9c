package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
)

// load has every rank load its shard, concurrently.
func (m *Manager) load(ctx context.Context, p *plan.Plan, raw []byte, ws []*tesserav1.WorkerInfo) error {
	addr, reduceAddr := map[string]string{}, map[string]string{}
	for _, w := range ws {
		addr[w.Id], reduceAddr[w.Id] = w.Address, w.ReduceAddress
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for si, st := range p.Stages {
		peers := reducePeers(st, reduceAddr)
		for ri, r := range st.Ranks {
			sh := &tesserav1.Shard{
				PlanVersion: p.Version, Cluster: m.cfg.Cluster, ModelDir: m.cfg.ModelDir, Stage: int32(si), Rank: int32(ri),
				Stages: int32(len(p.Stages)), Ranks: int32(len(st.Ranks)),
				Layers: rng(st.Layers), Heads: rng(r.Heads), KvHeads: rng(r.KVHeads), Mlp: rng(r.MLP), Vocab: rng(r.Vocab),
				AlibiSlopes: r.ALiBiSlopes, KvMap: r.KVMap, CacheTokens: int32(m.cfg.CacheTokens), BlockSize: int32(m.cfg.BlockSize),
				PlanJson: string(raw), ReducePeers: peers,
			}
			wg.Go(func() {
				if err := m.loadShard(ctx, addr[r.Worker], sh); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("worker %s (stage %d rank %d): %w", r.Worker, si, ri, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// reducePeers are the direct all-reduce addresses of a stage's ranks, or
// nil when a rank's worker has none (it reduces over NATS, so all must).
func reducePeers(st plan.Stage, reduceAddr map[string]string) []string {
	if len(st.Ranks) < 2 {
		return nil
	}
	peers := make([]string, len(st.Ranks))
	for i, r := range st.Ranks {
		if peers[i] = reduceAddr[r.Worker]; peers[i] == "" {
			return nil
		}
	}
	return peers
}

func rng(r [2]int) *tesserav1.Range { return &tesserav1.Range{Start: int32(r[0]), End: int32(r[1])} }

// loadShard has one rank load its shard and waits for its last progress
// message. The stream is cancelled on return, whatever the worker still
// sends, so it never outlives the load.
func (m *Manager) loadShard(ctx context.Context, addr string, sh *tesserav1.Shard) error {
	c, err := m.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.LoadShard(ctx, &tesserav1.LoadShardRequest{Shard: sh})
	if err != nil {
		return err
	}
	for {
		pr, err := stream.Recv()
		if err != nil {
			return err
		}
		if pr.Done {
			return nil
		}
	}
}

type conn struct {
	client tesserav1.WorkerClient
	closer io.Closer
}

func dialWorker(addr string) (tesserav1.WorkerClient, io.Closer, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return tesserav1.NewWorkerClient(cc), cc, nil
}

func (m *Manager) client(addr string) (tesserav1.WorkerClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.conns[addr]; ok {
		return c.client, nil
	}
	c, closer, err := m.cfg.Dial(addr)
	if err != nil {
		return nil, err
	}
	m.conns[addr] = &conn{client: c, closer: closer}
	return c, nil
}

// closeConns closes the connections to every address but those of keep:
// to workers that left when membership changes, to all at the end.
func (m *Manager) closeConns(keep []*tesserav1.WorkerInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, c := range m.conns {
		if slices.ContainsFunc(keep, func(w *tesserav1.WorkerInfo) bool { return w.Address == a }) {
			continue
		}
		c.closer.Close()
		delete(m.conns, a)
	}
}
