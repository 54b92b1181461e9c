package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leadership is a coordinator's term as the cluster's leader, won by
// Campaign. It ends when Resign is called, the session's lease is lost
// (etcd unreachable for longer than the TTL) or the leader key is deleted;
// then Done is closed. A leader must stop acting as one when Done closes;
// PutPlan refuses writes from a lost leadership in any case.
type Leadership struct {
	cli      *clientv3.Client
	cluster  string
	id       string
	session  *concurrency.Session
	election *concurrency.Election
	key      string
	rev      int64

	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
}

// CampaignOption adjusts Campaign.
type CampaignOption func(*campaignOptions)

type campaignOptions struct{ ttl time.Duration }

// SessionTTL sets the TTL of the leader's session lease (default
// DefaultTTL): how long a crashed leader keeps the role before a standby
// takes over.
func SessionTTL(d time.Duration) CampaignOption {
	return func(o *campaignOptions) { o.ttl = d }
}

// Campaign blocks until id is elected leader of the cluster's coordinators
// (concurrency.Election under ElectionPrefix), or ctx ends (then it returns
// ctx.Err() and withdraws the candidacy).
func Campaign(ctx context.Context, cli *clientv3.Client, cluster, id string, opts ...CampaignOption) (*Leadership, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty coordinator id", ErrInvalid)
	}
	o := campaignOptions{ttl: DefaultTTL}
	for _, f := range opts {
		f(&o)
	}
	secs := int(math.Ceil(o.ttl.Seconds()))
	if secs < 1 {
		secs = 1
	}
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(secs), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("registry: session for %s: %w", id, err)
	}
	e := concurrency.NewElection(session, ElectionPrefix(cluster))
	if err := e.Campaign(ctx, id); err != nil {
		session.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("registry: campaign of %s: %w", id, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	l := &Leadership{
		cli: cli, cluster: cluster, id: id, session: session, election: e,
		key: e.Key(), rev: e.Rev(), done: make(chan struct{}), cancel: cancel,
	}
	go l.monitor(wctx)
	return l, nil
}

// monitor closes done when the session ends or the leader key goes away.
func (l *Leadership) monitor(ctx context.Context) {
	defer l.end()
	rev := l.rev
	for {
		wctx, cancel := context.WithCancel(ctx)
		wch := l.cli.Watch(wctx, l.key, clientv3.WithRev(rev+1))
	watching:
		for {
			select {
			case <-ctx.Done():
				cancel()
				return
			case <-l.session.Done():
				cancel()
				return
			case resp, ok := <-wch:
				if !ok || resp.Err() != nil {
					break watching
				}
				for _, ev := range resp.Events {
					if ev.Type == clientv3.EventTypeDelete {
						cancel()
						return
					}
				}
				rev = resp.Header.Revision
			}
		}
		cancel()
		if l.cli.Ctx().Err() != nil {
			return
		}
		// The watch broke (compaction or a lost member): check the key
		// directly, then watch again.
		gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := l.cli.Get(gctx, l.key)
		gcancel()
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.rev {
				return
			}
			rev = resp.Header.Revision
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *Leadership) end() { l.once.Do(func() { close(l.done) }) }

// ID is the leader's id as given to Campaign.
func (l *Leadership) ID() string { return l.id }

// Key is the election key this leadership holds.
func (l *Leadership) Key() string { return l.key }

// Rev is the create revision of Key; it identifies this term.
func (l *Leadership) Rev() int64 { return l.rev }

// Done is closed when the leadership is lost or resigned.
func (l *Leadership) Done() <-chan struct{} { return l.done }

// Resign gives up the leadership (deleting the key, so a standby is elected
// at once) and closes the session. It is safe to call more than once.
func (l *Leadership) Resign(ctx context.Context) error {
	var err error
	select {
	case <-l.done:
	default:
		if rerr := l.election.Resign(ctx); rerr != nil && !errors.Is(rerr, context.Canceled) {
			err = fmt.Errorf("registry: resign %s: %w", l.id, rerr)
		}
	}
	l.cancel()
	// A session whose lease is already gone (lost leadership, closed
	// client) has nothing left to revoke.
	if cerr := l.session.Close(); cerr != nil && err == nil && l.cli.Ctx().Err() == nil && !errors.Is(cerr, rpctypes.ErrLeaseNotFound) {
		err = fmt.Errorf("registry: close session of %s: %w", l.id, cerr)
	}
	<-l.done
	return err
}

// Leader returns the id of the cluster's current leader, or an error
// wrapping ErrNoLeader when there is none.
func Leader(ctx context.Context, cli *clientv3.Client, cluster string) (string, error) {
	if err := checkName("cluster", cluster); err != nil {
		return "", err
	}
	resp, err := cli.Get(ctx, ElectionPrefix(cluster)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("registry: leader of %s: %w", cluster, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w: cluster %s", ErrNoLeader, cluster)
	}
	return string(resp.Kvs[0].Value), nil
}
