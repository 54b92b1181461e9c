package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/shard/transport/testpki"
)

func newHub(t testing.TB, tc *tls.Config) *Hub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(ln, subj.Cluster, tc)
	t.Cleanup(func() { h.Close() })
	return h
}

// meshOf joins one mesh per hub, rank r on hubs[r], for stage 1 of subj.
func meshOf(t testing.TB, hubs ...*Hub) []*Mesh {
	t.Helper()
	addrs := make([]string, len(hubs))
	for r, h := range hubs {
		addrs[r] = h.Addr().String()
	}
	ms := make([]*Mesh, len(hubs))
	for r, h := range hubs {
		m, err := h.Join(subj.Plan, 1, r, addrs)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		ms[r] = m
	}
	return ms
}

func reducers(ms []*Mesh) []Reducer {
	rs := make([]Reducer, len(ms))
	for i, m := range ms {
		rs[i] = m
	}
	return rs
}

func TestMeshAllReduce(t *testing.T) {
	for _, ranks := range []int{2, 3} {
		for _, n := range []int{1, 1024, 40000} { // 160 KB: more than a socket buffer
			t.Run(fmt.Sprintf("%dranks/%dfloats", ranks, n), func(t *testing.T) {
				checkGoroutines(t)
				hubs := make([]*Hub, ranks)
				for r := range hubs {
					hubs[r] = newHub(t, nil)
				}
				checkAllReduce(t, reducers(meshOf(t, hubs...)), n)
			})
		}
	}
}

func TestMeshSingleRankIsNoop(t *testing.T) {
	m := meshOf(t, newHub(t, nil))[0]
	buf := []float32{1, 2}
	if err := m.AllReduce(context.Background(), 0, 0, buf); err != nil || buf[0] != 1 || buf[1] != 2 {
		t.Fatalf("AllReduce = %v, buf %v", err, buf)
	}
}

func TestMeshJoinRejects(t *testing.T) {
	h := newHub(t, nil)
	for _, c := range []struct {
		stage, rank int
		addrs       []string
	}{{0, 0, nil}, {0, 2, []string{"a", "b"}}, {-1, 0, []string{"a"}}, {0, -1, []string{"a"}}} {
		if _, err := h.Join(1, c.stage, c.rank, c.addrs); !errors.Is(err, ErrInvalid) {
			t.Errorf("Join(stage %d, rank %d, %v) = %v, want ErrInvalid", c.stage, c.rank, c.addrs, err)
		}
	}
}

// withFakePeer joins rank 0 of 2 on a new hub and dials it as rank 1
// over plain TCP; the test writes on the raw connection what a broken or
// hostile peer would.
func withFakePeer(t *testing.T, tc *tls.Config) (*Mesh, net.Conn) {
	t.Helper()
	h := newHub(t, tc)
	m, err := h.Join(subj.Plan, 1, 0, []string{h.Addr().String(), "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := writeHello(c, subj.Cluster, meshKey{plan: subj.Plan, stage: 1, from: 1, to: 0, ranks: 2}); err != nil {
		t.Fatal(err)
	}
	return m, c
}

func frameHeader(step uint64, seq, n uint32) []byte {
	b := make([]byte, frameHdrSize)
	binary.LittleEndian.PutUint32(b[0:], frameMagic)
	binary.LittleEndian.PutUint32(b[4:], seq)
	binary.LittleEndian.PutUint64(b[8:], step)
	binary.LittleEndian.PutUint32(b[16:], n)
	return b
}

// A peer that breaks the protocol makes the reduction fail at once with
// an error naming the problem, long before the step's deadline.
func TestMeshBrokenPeer(t *testing.T) {
	for _, c := range []struct {
		name  string
		write []byte
		want  error
	}{
		{"garbage header", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrMalformed},
		{"huge frame", frameHeader(0, 0, 1<<31), ErrMalformed},
		{"wrong size", append(frameHeader(0, 0, 8), make([]byte, 8)...), ErrMalformed},
		{"closes mid-frame", append(frameHeader(0, 0, 16), 1, 2, 3), ErrPeer},
		{"later reduction", append(frameHeader(1, 0, 16), make([]byte, 16)...), ErrPeer},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkGoroutines(t)
			m, peer := withFakePeer(t, nil)
			if _, err := peer.Write(c.write); err != nil {
				t.Fatal(err)
			}
			if c.name == "closes mid-frame" {
				peer.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			buf := []float32{1, 2, 3, 4}
			start := time.Now()
			err := m.AllReduce(ctx, 0, 0, buf)
			if !errors.Is(err, c.want) || ctx.Err() != nil {
				t.Fatalf("AllReduce = %v, want %v before the deadline", err, c.want)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v to fail", took)
			}
			if buf[0] != 1 || buf[3] != 4 {
				t.Errorf("buf changed on error: %v", buf)
			}
		})
	}
}

// A peer that dies between reductions fails the next one promptly; a
// new process for its rank reconnects and the mesh reduces again.
func TestMeshPeerLossAndRejoin(t *testing.T) {
	checkGoroutines(t)
	hubs := []*Hub{newHub(t, nil), newHub(t, nil)}
	ms := meshOf(t, hubs...)
	checkAllReduce(t, reducers(ms), 16)

	ms[1].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := ms[0].AllReduce(ctx, 9, 0, make([]float32, 16)); !errors.Is(err, ErrPeer) {
		t.Fatalf("AllReduce with rank 1 gone = %v, want ErrPeer", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v to notice the lost peer", took)
	}

	again, err := hubs[1].Join(subj.Plan, 1, 1, []string{hubs[0].Addr().String(), hubs[1].Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	checkAllReduce(t, []Reducer{ms[0], again}, 16)
}

// A peer that never sends makes the reduction end with the context.
func TestMeshSilentPeerHitsDeadline(t *testing.T) {
	checkGoroutines(t)
	m, _ := withFakePeer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := m.AllReduce(ctx, 0, 0, make([]float32, 4)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AllReduce = %v, want DeadlineExceeded", err)
	}
}

// testTLS is a mutual-TLS config for 127.0.0.1 from a new CA, as
// cmd/tessera's grpcMutual builds it.
func testTLS(t testing.TB) *tls.Config {
	return testpki.NewCA(t, "test").MutualTLS(t)
}

// With the cluster's mutual TLS, ranks reduce; a rank with another CA's
// certificate is never let in.
func TestMeshTLS(t *testing.T) {
	cluster := testTLS(t)
	t.Run("same CA", func(t *testing.T) {
		checkGoroutines(t)
		checkAllReduce(t, reducers(meshOf(t, newHub(t, cluster), newHub(t, cluster), newHub(t, cluster))), 1024)
	})
	t.Run("rogue rank", func(t *testing.T) {
		checkGoroutines(t)
		rogue := testTLS(t)
		ms := meshOf(t, newHub(t, cluster), newHub(t, rogue))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		errs := make(chan error, 2)
		for _, m := range ms {
			go func() { errs <- m.AllReduce(ctx, 0, 0, make([]float32, 4)) }()
		}
		for range ms {
			if err := <-errs; err == nil {
				t.Fatal("a rank reduced with a peer from another CA")
			}
		}
	})
	t.Run("plain peer", func(t *testing.T) {
		checkGoroutines(t)
		m, _ := withFakePeer(t, cluster) // its hello comes without TLS
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := m.AllReduce(ctx, 0, 0, make([]float32, 4)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("AllReduce = %v, want DeadlineExceeded (the plain peer is refused)", err)
		}
	})
}
