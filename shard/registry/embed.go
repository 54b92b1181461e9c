package registry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbedOption adjusts the configuration of an embedded etcd before it starts.
type EmbedOption func(*embed.Config)

// EmbedNoFsync disables fsync in the embedded etcd: much faster, and safe for
// tests and throw-away `tessera local` data directories, never for data that
// must survive a power loss.
func EmbedNoFsync() EmbedOption { return func(c *embed.Config) { c.UnsafeNoFsync = true } }

// EmbedReadyTimeout is how long Embedded waits for the server to be ready.
var EmbedReadyTimeout = 20 * time.Second

// Embedded starts a single-member etcd in dir, listening on loopback on free
// ports (client and peer), logging errors only, and waits until it serves
// clients. It returns the server, its client endpoint ("http://127.0.0.1:N")
// and a stop function that shuts it down and waits; stop may be called more
// than once. dir is created if missing and left in place by stop.
func Embedded(dir string, opts ...EmbedOption) (e *embed.Etcd, endpoint string, stop func(), err error) {
	var lastErr error
	// A free port found by listening on :0 can be taken by someone else
	// before etcd binds it, so a bind failure is retried with new ports.
	for attempt := 0; attempt < 5; attempt++ {
		e, endpoint, stop, err = startEmbedded(dir, opts)
		if err == nil {
			return e, endpoint, stop, nil
		}
		lastErr = err
		if !isAddrInUse(err) {
			break
		}
	}
	return nil, "", nil, fmt.Errorf("registry: start embedded etcd in %s: %w", dir, lastErr)
}

func startEmbedded(dir string, opts []EmbedOption) (*embed.Etcd, string, func(), error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", nil, err
	}
	cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}

	cfg := embed.NewConfig()
	cfg.Name = "tessera"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{cu}
	cfg.AdvertiseClientUrls = []url.URL{cu}
	cfg.ListenPeerUrls = []url.URL{pu}
	cfg.AdvertisePeerUrls = []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A single member never loses an election, so short ticks only make
	// it elect itself (and start) sooner.
	cfg.TickMs = 20
	cfg.ElectionMs = 200
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	var stopping atomic.Bool
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(errorLogger(&stopping))
	// Keep history bounded for long-running local clusters; watchers in
	// this package re-list after a compaction.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "10m"
	for _, o := range opts {
		o(cfg)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	timer := time.NewTimer(EmbedReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", nil, fmt.Errorf("etcd failed while starting: %w", err)
	case <-timer.C:
		e.Server.Stop()
		e.Close()
		return nil, "", nil, fmt.Errorf("etcd not ready after %v", EmbedReadyTimeout)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// Closing listeners makes etcd log errors; they mean nothing.
			stopping.Store(true)
			e.Close()
		})
	}
	return e, cu.String(), stop, nil
}

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func isAddrInUse(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "listen"
}
