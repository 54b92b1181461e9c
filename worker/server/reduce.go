package server

import (
	"context"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/transport"
)

// joinReduce joins the all-reduce of sh's stage: over the direct mesh
// when this worker has a Hub and the coordinator sent every rank's mesh
// address, over the transport (NATS) otherwise. All ranks of a stage get
// the same peer list, so they all make the same choice.
func (s *Server) joinReduce(ctx context.Context, subj transport.Subjects, sh *tesserav1.Shard, ranks int) (*groupComm, error) {
	if peers := sh.GetReducePeers(); s.cfg.Hub != nil && len(peers) == ranks && ranks > 1 {
		m, err := s.cfg.Hub.Join(subj.Plan, int(sh.Stage), int(sh.Rank), peers)
		if err != nil {
			return nil, err
		}
		return &groupComm{g: m}, nil
	}
	return newGroupComm(ctx, s.tr, subj, int(sh.Stage), int(sh.Rank), ranks, s.cfg.StepTimeout)
}

// path names how c reduces, for the log.
func (c *groupComm) path() string {
	if _, ok := c.g.(*transport.Mesh); ok {
		return "direct"
	}
	return "nats"
}
