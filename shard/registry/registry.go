package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Sentinel errors. Functions wrap them with %w, so test with errors.Is.
var (
	// ErrUnreachable: no etcd member answered within the dial timeout.
	ErrUnreachable = errors.New("etcd unreachable")
	// ErrInvalid: a cluster name, worker id or argument is not usable.
	ErrInvalid = errors.New("invalid argument")
	// ErrLeaseLost: the registration's lease expired or was revoked.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotLeader: the caller does not (or no longer) lead the cluster.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no coordinator currently leads the cluster.
	ErrNoLeader = errors.New("no leader")
	// ErrNoPlan: no plan has been published for the cluster.
	ErrNoPlan = errors.New("no plan published")
	// ErrStalePlan: the plan version is not newer than the current one.
	ErrStalePlan = errors.New("plan version not newer than current")
	// ErrIDTaken: a live worker already holds the worker id.
	ErrIDTaken = errors.New("worker id taken")
)

// DefaultTTL is the worker lease TTL used when Register gets ttl <= 0.
const DefaultTTL = 5 * time.Second

// Keys.

// Prefix is the root of a cluster's keys: "/tessera/<cluster>/".
func Prefix(cluster string) string { return "/tessera/" + cluster + "/" }

// WorkersPrefix is the prefix under which workers register.
func WorkersPrefix(cluster string) string { return Prefix(cluster) + "workers/" }

// WorkerKey is the key of one worker's registration.
func WorkerKey(cluster, id string) string { return WorkersPrefix(cluster) + id }

// ElectionPrefix is the concurrency.Election prefix of the coordinators.
func ElectionPrefix(cluster string) string { return Prefix(cluster) + "leader" }

// PlanKey is the key holding plan version v's JSON.
func PlanKey(cluster string, v uint64) string { return fmt.Sprintf("%splan/%d", Prefix(cluster), v) }

// CurrentPlanKey holds the current plan version as a decimal string.
func CurrentPlanKey(cluster string) string { return Prefix(cluster) + "plan/current" }

func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if strings.ContainsAny(s, "/ \t\r\n\x00") {
		return fmt.Errorf("%w: %s %q contains '/', space or control characters", ErrInvalid, what, s)
	}
	return nil
}

// Dialing.

// DialOption adjusts Dial.
type DialOption func(*clientv3.Config)

// DialTimeout bounds how long Dial waits for a first answer (default 3 s).
func DialTimeout(d time.Duration) DialOption {
	return func(c *clientv3.Config) { c.DialTimeout = d }
}

// Dial connects to etcd at the comma-separated endpoints and checks that a
// member answers within the dial timeout, so that a wrong address fails fast
// with an error wrapping ErrUnreachable, e.g.
//
//	etcd unreachable: etcd at 127.0.0.1:1 did not answer within 3s: context deadline exceeded (is etcd running? pass --etcd)
func Dial(ctx context.Context, endpoints string, opts ...DialOption) (*clientv3.Client, error) {
	eps := strings.FieldsFunc(endpoints, func(r rune) bool { return r == ',' || r == ' ' })
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: no etcd endpoint given (pass --etcd)", ErrInvalid)
	}
	cfg := clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          3 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               quietLogger(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: etcd at %s: %v (is etcd running? pass --etcd)", ErrUnreachable, endpoints, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	// A linearizable read needs a leader: it proves the cluster serves.
	if _, err := cli.Get(pctx, "/tessera/", clientv3.WithCountOnly(), clientv3.WithLimit(1)); err != nil {
		cli.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: etcd at %s did not answer within %v: %v (is etcd running? pass --etcd)",
			ErrUnreachable, endpoints, cfg.DialTimeout, err)
	}
	return cli, nil
}

// Worker registration.

// Registration is a worker's live entry in etcd. Its lease is kept alive
// until Close, the context given to Register ends, or the lease is lost
// (etcd unreachable for longer than the TTL, or the lease revoked); then
// Done is closed and Err says why.
type Registration struct {
	cli      *clientv3.Client
	key      string
	lease    clientv3.LeaseID
	tookOver string
	cancel   context.CancelFunc
	done     chan struct{}
	closeMu  sync.Once
	errMu    sync.Mutex
	err      error
}

// Register writes w (as protojson) at WorkerKey(cluster, w.Id) under a new
// lease of the given TTL (rounded up to whole seconds; DefaultTTL when <= 0;
// etcd may raise very short TTLs to its minimum) and keeps the lease alive in
// the background.
//
// The entry is owned by its lease: it is created only where no key exists
// (a compare on the key's create revision in the same transaction), and
// only revoking that lease deletes it. When the id is held, Register watches
// the holder's lease for up to its remaining TTL: a lease that is renewed
// belongs to a live worker, and Register fails with ErrIDTaken naming the
// holder's address; a lease that runs out belonged to a dead one, and
// Register takes the id over (TookOver names the previous address).
func Register(ctx context.Context, cli *clientv3.Client, cluster string, w *tesserav1.WorkerInfo, ttl time.Duration) (*Registration, error) {
	return register(ctx, cli, cluster, w, ttl, clientv3.NoLease)
}

// register is Register that may also move an entry still held under prev,
// the caller's own earlier lease, to the new lease in one transaction:
// re-registering after a lost keepalive then never deletes the entry.
func register(ctx context.Context, cli *clientv3.Client, cluster string, w *tesserav1.WorkerInfo, ttl time.Duration, prev clientv3.LeaseID) (*Registration, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("%w: nil worker", ErrInvalid)
	}
	if err := checkName("worker id", w.GetId()); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	val, err := protojson.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("registry: encode worker %s: %w", w.GetId(), err)
	}
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("registry: grant lease for worker %s: %w", w.GetId(), err)
	}
	// The keepalive starts before the claim: waiting out a dead holder can
	// take longer than our own TTL, and an unrenewed lease would be gone by
	// the time the key is free. It outlives ctx only as far as ctx allows:
	// cancelling ctx stops it, like Close but without revoking (the entry
	// then expires).
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	abandon := func() {
		stop()
		cancel()
		revokeQuietly(cli, grant.ID)
	}
	ka, err := cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		abandon()
		return nil, fmt.Errorf("registry: keep lease alive for worker %s: %w", w.GetId(), err)
	}
	key := WorkerKey(cluster, w.GetId())
	tookOver, err := claim(ctx, cli, key, string(val), grant.ID, prev)
	if err != nil {
		abandon()
		return nil, fmt.Errorf("registry: register worker %s: %w", w.GetId(), err)
	}
	r := &Registration{cli: cli, key: key, lease: grant.ID, tookOver: tookOver, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer stop()
		for range ka {
		}
		if kctx.Err() != nil {
			r.setErr(context.Canceled)
		} else {
			r.setErr(fmt.Errorf("%w: worker %s", ErrLeaseLost, w.GetId()))
		}
	}()
	return r, nil
}

// claim puts val at key under lease if no key exists or the key is held
// under prev, waiting out a holder whose lease is not renewed. It returns
// the address of the holder it replaced ("" if the key was free or ours).
func claim(ctx context.Context, cli *clientv3.Client, key, val string, lease, prev clientv3.LeaseID) (string, error) {
	tookOver := ""
	for {
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return "", err
		}
		if resp.Succeeded {
			return tookOver, nil
		}
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			continue // deleted between the compare and the get
		}
		if prev != clientv3.NoLease && clientv3.LeaseID(kvs[0].Lease) == prev {
			moved, err := cli.Txn(ctx).
				If(clientv3.Compare(clientv3.LeaseValue(key), "=", prev)).
				Then(clientv3.OpPut(key, val, clientv3.WithLease(lease))).
				Commit()
			if err != nil {
				return "", err
			}
			if moved.Succeeded {
				return "", nil
			}
			continue
		}
		addr := "an unknown address"
		if h, ok := decodeWorker(kvs[0].Value); ok && h.GetAddress() != "" {
			addr = h.GetAddress()
		}
		alive, err := renewed(ctx, cli, key, clientv3.LeaseID(kvs[0].Lease))
		if err != nil {
			return "", err
		}
		if alive {
			return "", fmt.Errorf("%w: the live worker at %s holds it; give this worker another --id", ErrIDTaken, addr)
		}
		tookOver = addr
	}
}

// renewed watches the lease holding key until it is renewed (true: a live
// worker keeps it) or the key is gone or held under another lease (false).
// A lease that outlives the remaining TTL it had at the start was renewed
// even when no renewal showed (TTLs are whole seconds, and a 2 s lease
// renewed every 0.67 s always reads 1). A key without a lease
// never expires, so it counts as held.
func renewed(ctx context.Context, cli *clientv3.Client, key string, lease clientv3.LeaseID) (bool, error) {
	if lease == clientv3.NoLease {
		return true, nil
	}
	var deadline time.Time
	var last int64
	for {
		ttl, err := cli.TimeToLive(ctx, lease)
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return false, nil
		case err != nil:
			return false, err
		case ttl.TTL < 0:
			return false, nil
		case deadline.IsZero():
			// TTL is whole seconds rounded down: add one for the fraction,
			// and one for etcd's expiry loop, which revokes a lease some
			// hundreds of milliseconds after it runs out.
			deadline = time.Now().Add(time.Duration(ttl.TTL+2) * time.Second)
		case ttl.TTL > last || time.Now().After(deadline):
			return true, nil
		}
		last = ttl.TTL
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		got, err := cli.Get(ctx, key)
		if err != nil {
			return false, err
		}
		if len(got.Kvs) == 0 || clientv3.LeaseID(got.Kvs[0].Lease) != lease {
			return false, nil
		}
	}
}

// TookOver is the address of the worker whose registration of the same id
// this one replaced after its lease ran out, or "".
func (r *Registration) TookOver() string { return r.tookOver }

// Key is the etcd key of the registration.
func (r *Registration) Key() string { return r.key }

// Lease is the etcd lease the entry lives under.
func (r *Registration) Lease() clientv3.LeaseID { return r.lease }

// Done is closed when the lease is no longer kept alive.
func (r *Registration) Done() <-chan struct{} { return r.done }

// Err is nil while the registration is alive; after Done it wraps
// ErrLeaseLost when the lease was lost, or is context.Canceled after Close
// or cancellation of Register's context.
func (r *Registration) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *Registration) setErr(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
}

// Update replaces the registered WorkerInfo (same key, same lease), e.g. to
// publish a new health flag. w.Id must not change.
func (r *Registration) Update(ctx context.Context, w *tesserav1.WorkerInfo) error {
	if w == nil || !strings.HasSuffix(r.key, "/"+w.GetId()) {
		return fmt.Errorf("%w: update must keep worker id of %s", ErrInvalid, r.key)
	}
	select {
	case <-r.done:
		return r.Err()
	default:
	}
	val, err := protojson.Marshal(w)
	if err != nil {
		return err
	}
	// Conditioned on the lease still backing the key, so an update never
	// resurrects an expired entry without a lease.
	resp, err := r.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(r.key), "=", r.lease)).
		Then(clientv3.OpPut(r.key, string(val), clientv3.WithLease(r.lease))).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: update %s: %w", r.key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s", ErrLeaseLost, r.key)
	}
	return nil
}

// Close stops the keepalive and revokes the lease, which deletes the entry
// at once. It waits at most 2 s for etcd and is safe to call more than once.
func (r *Registration) Close() error {
	var err error
	r.closeMu.Do(func() {
		r.cancel()
		<-r.done
		if r.cli.Ctx().Err() != nil {
			return // client closed: the lease expires on its own
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, rerr := r.cli.Revoke(ctx, r.lease); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			err = fmt.Errorf("registry: revoke %s: %w", r.key, rerr)
		}
	})
	return err
}

func revokeQuietly(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = cli.Revoke(ctx, id)
}

// Watching workers.

// Workers returns the currently registered workers sorted by id, and the
// etcd revision they were read at. Entries that do not decode are skipped.
func Workers(ctx context.Context, cli *clientv3.Client, cluster string) ([]*tesserav1.WorkerInfo, int64, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, 0, err
	}
	set, rev, err := listWorkers(ctx, cli, cluster)
	if err != nil {
		return nil, 0, err
	}
	return snapshot(set), rev, nil
}

func listWorkers(ctx context.Context, cli *clientv3.Client, cluster string) (map[string]*tesserav1.WorkerInfo, int64, error) {
	resp, err := cli.Get(ctx, WorkersPrefix(cluster), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("registry: list workers of %s: %w", cluster, err)
	}
	set := make(map[string]*tesserav1.WorkerInfo, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if w, ok := decodeWorker(kv.Value); ok {
			set[string(kv.Key)] = w
		}
	}
	return set, resp.Header.Revision, nil
}

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

func decodeWorker(b []byte) (*tesserav1.WorkerInfo, bool) {
	w := new(tesserav1.WorkerInfo)
	if err := unmarshal.Unmarshal(b, w); err != nil || w.GetId() == "" {
		return nil, false
	}
	return w, true
}

func snapshot(set map[string]*tesserav1.WorkerInfo) []*tesserav1.WorkerInfo {
	out := make([]*tesserav1.WorkerInfo, 0, len(set))
	for _, w := range set {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// Watch emits the full set of registered workers (sorted by id): first the
// current set, then a new set after every change. It lists the prefix and
// watches from the list's revision, so no join or leave is missed; after a
// compaction or a lost watch it lists again. When the reader is slower than
// the changes, intermediate sets are coalesced and the channel always
// delivers the latest one. The channel is closed when ctx ends or the client
// is closed; its goroutine then exits.
func Watch(ctx context.Context, cli *clientv3.Client, cluster string) (<-chan []*tesserav1.WorkerInfo, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	set, rev, err := listWorkers(ctx, cli, cluster)
	if err != nil {
		return nil, err
	}
	out := make(chan []*tesserav1.WorkerInfo)
	go func() {
		defer close(out)
		prefix := WorkersPrefix(cluster)
		pending := snapshot(set)
		for ctx.Err() == nil && cli.Ctx().Err() == nil {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			relist := false
			for !relist {
				var send chan []*tesserav1.WorkerInfo
				if pending != nil {
					send = out
				}
				select {
				case <-ctx.Done():
					cancel()
					return
				case send <- pending:
					pending = nil
				case resp, ok := <-wch:
					if !ok || resp.Err() != nil || resp.Canceled {
						relist = true
						break
					}
					for _, ev := range resp.Events {
						k := string(ev.Kv.Key)
						if ev.Type == clientv3.EventTypeDelete {
							delete(set, k)
						} else if w, ok := decodeWorker(ev.Kv.Value); ok {
							set[k] = w
						} else {
							delete(set, k)
						}
					}
					rev = resp.Header.Revision
					if len(resp.Events) > 0 {
						pending = snapshot(set)
					}
				}
			}
			cancel()
			// The watch ended (compaction, leader loss, client closing):
			// list again and resume from the new revision.
			retryUntil(ctx, cli, func() error {
				s, r, err := listWorkers(ctx, cli, cluster)
				if err == nil {
					set, rev, pending = s, r, snapshot(s)
				}
				return err
			})
		}
	}()
	return out, nil
}

// retryUntil calls f until it succeeds, ctx ends or the client closes,
// waiting 200 ms after each failure.
func retryUntil(ctx context.Context, cli *clientv3.Client, f func() error) {
	for ctx.Err() == nil && cli.Ctx().Err() == nil {
		if f() == nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
