package server

import (
	"context"
	"net"
	"testing"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/transport"
)

// The stage reduces directly only with a Hub and every rank's address;
// otherwise over the transport, the same choice on every rank.
func TestJoinReduceChoosesPath(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hub := transport.NewHub(ln, "test", nil)
	defer hub.Close()
	tr := transport.NewInProcess()
	defer tr.Close()
	subj := transport.Subjects{Cluster: "test", Plan: 3}
	both := []string{"127.0.0.1:1", "127.0.0.1:2"}
	for _, c := range []struct {
		name  string
		hub   *transport.Hub
		peers []string
		ranks int
		want  string
	}{
		{"hub and every address", hub, both, 2, "direct"},
		{"no hub (--tp-reduce nats)", nil, both, 2, "nats"},
		{"a rank without an address", hub, nil, 2, "nats"},
		{"addresses of another shape", hub, both, 3, "nats"},
	} {
		s := New(Config{Cluster: "test", Hub: c.hub}, tr)
		comm, err := s.joinReduce(context.Background(), subj, &tesserav1.Shard{Stage: 0, Rank: 1, ReducePeers: c.peers}, c.ranks)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := comm.path(); got != c.want {
			t.Errorf("%s: reduces over %s, want %s", c.name, got, c.want)
		}
		comm.g.Close()
	}
}
