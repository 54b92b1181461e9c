package registry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// One embedded etcd serves every test; each test uses its own cluster name.
var endpoint string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "tessera-registry-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	_, ep, stop, err := Embedded(dir, EmbedNoFsync())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if testing.Verbose() {
		fmt.Printf("embedded etcd ready at %s in %v\n", ep, time.Since(start).Round(time.Millisecond))
	}
	endpoint = ep
	// etcd starts some of its serving goroutines after it reports ready;
	// one round trip lets them start before the first test's leak check.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if cli, err := Dial(ctx, ep); err == nil {
		cli.Close()
	}
	cancel()
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func client(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := Dial(ctx, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

func clusterName(t testing.TB) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
}

// checkGoroutines fails the test when goroutines started during it are
// still running after it and its cleanups (goleak retries for a while).
func checkGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func worker(id string, mem int64) *tesserav1.WorkerInfo {
	return &tesserav1.WorkerInfo{Id: id, Address: "127.0.0.1:7000", Backend: "cpu", Device: "cpu", MemoryBytes: mem, Version: "test"}
}

func ids(ws []*tesserav1.WorkerInfo) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.Id
	}
	return strings.Join(s, ",")
}

// await reads sets from ch until one has the wanted ids.
func await(t *testing.T, ch <-chan []*tesserav1.WorkerInfo, want string, within time.Duration) []*tesserav1.WorkerInfo {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	last := "(nothing)"
	for {
		select {
		case ws, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed; want %q", want)
			}
			if last = ids(ws); last == want {
				return ws
			}
		case <-timer.C:
			t.Fatalf("after %v the watcher sees %q, want %q", within, last, want)
		}
	}
}

func TestDialUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Dial(context.Background(), "127.0.0.1:1", DialTimeout(300*time.Millisecond))
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "pass --etcd") {
		t.Errorf("error does not name the address and the flag: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to fail", d)
	}
	if _, err := Dial(context.Background(), " "); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty endpoint: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	cli := client(t)
	defer cli.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		cluster, id string
	}{{"", "w"}, {"a/b", "w"}, {"c", ""}, {"c", "w/1"}, {"c", "w 1"}} {
		if _, err := Register(ctx, cli, tc.cluster, worker(tc.id, 1), time.Second); !errors.Is(err, ErrInvalid) {
			t.Errorf("Register(%q, %q) = %v, want ErrInvalid", tc.cluster, tc.id, err)
		}
	}
	if _, err := Watch(ctx, cli, "x/y"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Watch: %v", err)
	}
}

func TestRegisterWatchJoinLeave(t *testing.T) {
	checkGoroutines(t)
	cli := client(t)
	defer cli.Close()
	cluster := clusterName(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A worker present before the watch starts is in the first set.
	pre, err := Register(ctx, cli, cluster, worker("w0", 1<<30), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := Watch(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	await(t, ch, "w0", 2*time.Second)

	regs := map[string]*Registration{"w0": pre}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"join w1", func() (err error) {
			regs["w1"], err = Register(ctx, cli, cluster, worker("w1", 2<<30), 5*time.Second)
			return
		}, "w0,w1"},
		{"join w2", func() (err error) {
			regs["w2"], err = Register(ctx, cli, cluster, worker("w2", 3<<30), 5*time.Second)
			return
		}, "w0,w1,w2"},
		{"leave w1", func() error { return regs["w1"].Close() }, "w0,w2"},
		{"leave w0", func() error { return regs["w0"].Close() }, "w2"},
		{"rejoin w1", func() (err error) {
			regs["w1"], err = Register(ctx, cli, cluster, worker("w1", 2<<30), 5*time.Second)
			return
		}, "w1,w2"},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		await(t, ch, st.want, 2*time.Second)
	}

	// An update is seen with its new contents.
	up := worker("w2", 3<<30)
	up.Healthy = true
	if err := regs["w2"].Update(ctx, up); err != nil {
		t.Fatal(err)
	}
	for ws := await(t, ch, "w1,w2", 2*time.Second); !ws[1].Healthy; ws = await(t, ch, "w1,w2", 2*time.Second) {
	}
	if err := regs["w2"].Update(ctx, worker("other", 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("update with another id: %v", err)
	}
	got, _, err := Workers(ctx, cli, cluster)
	if err != nil || ids(got) != "w1,w2" || got[0].MemoryBytes != 2<<30 {
		t.Errorf("Workers = %v, %v", got, err)
	}
	for _, r := range regs {
		r.Close()
	}
	await(t, ch, "", 2*time.Second)
	cancel()
	for range ch {
	}
}

func TestLeaseLoss(t *testing.T) {
	checkGoroutines(t)
	cli := client(t)
	defer cli.Close()
	cluster := clusterName(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := Watch(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	await(t, ch, "", time.Second)

	cases := []struct {
		name   string
		lose   func(r *Registration, own *clientv3.Client)
		within time.Duration // until the entry is gone
	}{
		// The worker process dies: its client stops keeping the lease
		// alive without revoking it; etcd expires it after the TTL.
		{"keepalive stops", func(r *Registration, own *clientv3.Client) { own.Close() }, 6 * time.Second},
		// Someone revokes the lease (or etcd lost it).
		{"lease revoked", func(r *Registration, own *clientv3.Client) {
			if _, err := cli.Revoke(ctx, r.Lease()); err != nil {
				t.Error(err)
			}
		}, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			own := client(t)
			defer own.Close()
			r, err := Register(ctx, own, cluster, worker("w", 1), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			await(t, ch, "w", 2*time.Second)
			start := time.Now()
			tc.lose(r, own)
			select {
			case <-r.Done():
			case <-time.After(tc.within):
				t.Fatal("Done not closed")
			}
			await(t, ch, "", tc.within)
			t.Logf("entry gone after %v; Err = %v", time.Since(start).Round(time.Millisecond), r.Err())
			if r.Err() == nil {
				t.Error("Err is nil after Done")
			}
			r.Close()
		})
	}
}

func TestRegisterContextCancelStopsKeepalive(t *testing.T) {
	checkGoroutines(t)
	cli := client(t)
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	r, err := Register(ctx, cli, clusterName(t), worker("w", 1), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-r.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed after cancel")
	}
	if !errors.Is(r.Err(), context.Canceled) {
		t.Errorf("Err = %v", r.Err())
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}

func TestElectionFailover(t *testing.T) {
	checkGoroutines(t)
	cases := []struct {
		name string
		lose func(l *Leadership, own *clientv3.Client)
	}{
		{"resign", func(l *Leadership, own *clientv3.Client) {
			if err := l.Resign(context.Background()); err != nil {
				t.Error(err)
			}
		}},
		// The leader process dies: its session lease expires.
		{"session lost", func(l *Leadership, own *clientv3.Client) { own.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cluster := clusterName(t)
			ca, cb, obs := client(t), client(t), client(t)
			defer ca.Close()
			defer cb.Close()
			defer obs.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()

			if _, err := Leader(ctx, obs, cluster); !errors.Is(err, ErrNoLeader) {
				t.Fatalf("Leader before any campaign: %v", err)
			}
			la, err := Campaign(ctx, ca, cluster, "coord-a", SessionTTL(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				l   *Leadership
				err error
			}
			bch := make(chan result, 1)
			go func() {
				l, err := Campaign(ctx, cb, cluster, "coord-b", SessionTTL(time.Second))
				bch <- result{l, err}
			}()
			if id, err := Leader(ctx, obs, cluster); err != nil || id != "coord-a" {
				t.Fatalf("Leader = %q, %v", id, err)
			}
			if err := la.PutPlan(ctx, 1, []byte(`{"v":1}`)); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-bch:
				t.Fatalf("second campaigner elected while the first leads: %v", r.err)
			case <-time.After(200 * time.Millisecond):
			}

			start := time.Now()
			tc.lose(la, ca)
			var lb *Leadership
			select {
			case r := <-bch:
				if r.err != nil {
					t.Fatal(r.err)
				}
				lb = r.l
			case <-ctx.Done():
				t.Fatal("standby never elected")
			}
			t.Logf("standby elected after %v", time.Since(start).Round(time.Millisecond))
			select {
			case <-la.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("old leadership's Done not closed")
			}
			if id, err := Leader(ctx, obs, cluster); err != nil || id != "coord-b" {
				t.Fatalf("Leader = %q, %v", id, err)
			}
			// Only the leader may write plans.
			if tc.name == "resign" {
				if err := la.PutPlan(ctx, 2, []byte(`{}`)); !errors.Is(err, ErrNotLeader) {
					t.Errorf("old leader PutPlan: %v, want ErrNotLeader", err)
				}
			}
			if err := lb.PutPlan(ctx, 2, []byte(`{"v":2}`)); err != nil {
				t.Fatal(err)
			}
			v, js, err := CurrentPlan(ctx, obs, cluster)
			if err != nil || v != 2 || string(js) != `{"v":2}` {
				t.Errorf("CurrentPlan = %d %s %v", v, js, err)
			}
			if err := lb.Resign(ctx); err != nil {
				t.Error(err)
			}
			if err := lb.Resign(ctx); err != nil {
				t.Errorf("second Resign: %v", err)
			}
			la.Resign(ctx)
			if _, err := Leader(ctx, obs, cluster); !errors.Is(err, ErrNoLeader) {
				t.Errorf("Leader after resign: %v", err)
			}
		})
	}
}

func TestCampaignCancel(t *testing.T) {
	checkGoroutines(t)
	cli := client(t)
	defer cli.Close()
	cluster := clusterName(t)
	l, err := Campaign(context.Background(), cli, cluster, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Campaign(ctx, cli, cluster, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign = %v, want DeadlineExceeded", err)
	}
	if id, _ := Leader(context.Background(), cli, cluster); id != "a" {
		t.Errorf("leader %q", id)
	}
}

func TestPlans(t *testing.T) {
	checkGoroutines(t)
	cli := client(t)
	defer cli.Close()
	cluster := clusterName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := CurrentPlan(ctx, cli, cluster); !errors.Is(err, ErrNoPlan) {
		t.Fatalf("CurrentPlan before any: %v", err)
	}
	l, err := Campaign(ctx, cli, cluster, "coord")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(context.Background())
	if err := l.PutPlan(ctx, 1, []byte(`{"stages":1}`)); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	ch, err := WatchPlan(wctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	next := func() Plan {
		select {
		case p := <-ch:
			return p
		case <-time.After(2 * time.Second):
			t.Fatal("no plan from the watch")
			return Plan{}
		}
	}
	if p := next(); p.Version != 1 || string(p.JSON) != `{"stages":1}` {
		t.Errorf("first plan %d %s", p.Version, p.JSON)
	}
	for _, tc := range []struct {
		v    uint64
		body string
		want error
	}{
		{2, `{"stages":2}`, nil},
		{2, `{"stages":2}`, ErrStalePlan},
		{1, `{}`, ErrStalePlan},
		{0, `{}`, ErrInvalid},
		{9, `not json`, ErrInvalid},
		{5, `{"stages":5}`, nil},
	} {
		err := l.PutPlan(ctx, tc.v, []byte(tc.body))
		if !errors.Is(err, tc.want) {
			t.Errorf("PutPlan(%d, %s) = %v, want %v", tc.v, tc.body, err, tc.want)
		}
		if err == nil {
			if p := next(); p.Version != tc.v || string(p.JSON) != tc.body {
				t.Errorf("watch got %d %s, want %d", p.Version, p.JSON, tc.v)
			}
		}
	}
	v, js, err := CurrentPlan(ctx, cli, cluster)
	if err != nil || v != 5 || string(js) != `{"stages":5}` {
		t.Errorf("CurrentPlan = %d %s %v", v, js, err)
	}
	// Versions 1, 2 and 5 were published: only 5 and the one it replaced
	// remain, beside the current key.
	resp, err := cli.Get(ctx, Prefix(cluster)+"plan/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if want := []string{PlanKey(cluster, 2), PlanKey(cluster, 5), CurrentPlanKey(cluster)}; !sameSet(keys, want) {
		t.Errorf("plan keys after publishing 1, 2, 5: %v, want %v", keys, want)
	}
	wcancel()
	for range ch {
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestThousandWorkers registers 1,000 simulated workers and measures how
// long a watcher takes to see all of them.
func TestThousandWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	checkGoroutines(t)
	if raceEnabled {
		// The race detector slows etcd 10-20x: check correctness only.
		thousandWorkers(t, 200)
		return
	}
	if d := thousandWorkers(t, 1000); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func BenchmarkThousandWorkers(b *testing.B) {
	for i := 0; i < b.N; i++ {
		d := thousandWorkers(b, 1000)
		b.ReportMetric(float64(d.Milliseconds()), "ms/1000-workers")
	}
}

func thousandWorkers(t testing.TB, n int) time.Duration {
	cli, wcli := client(t), client(t)
	defer cli.Close()
	defer wcli.Close()
	cluster := fmt.Sprintf("%s-%d", clusterName(t), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := Watch(ctx, wcli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	<-ch // the empty initial set
	start := time.Now()
	regs := make([]*Registration, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const par = 32
	for p := 0; p < par; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := p; i < n; i += par {
				r, err := Register(ctx, cli, cluster, worker(fmt.Sprintf("w%04d", i), int64(i+1)<<30), 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				regs[i] = r
			}
		}(p)
	}
	var registered time.Time
	go func() { wg.Wait(); registered = time.Now(); close(errs) }()
	seen := 0
	for seen < n {
		select {
		case ws := <-ch:
			seen = len(ws)
		case err, ok := <-errs:
			if ok {
				t.Fatal(err)
			}
			errs = nil
		case <-ctx.Done():
			t.Fatalf("watcher saw %d of %d", seen, n)
		}
	}
	d := time.Since(start)
	for errs != nil {
		if err, ok := <-errs; ok {
			t.Fatal(err)
		} else {
			errs = nil
		}
	}
	t.Logf("last registration returned after %v; watcher saw all %d after %v (lag %v)",
		registered.Sub(start).Round(time.Millisecond), n, d.Round(time.Millisecond), (start.Add(d)).Sub(registered).Round(time.Microsecond))
	cancel()
	for range ch {
	}
	// Revoke in parallel so the test ends quickly.
	for p := 0; p < par; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := p; i < n; i += par {
				regs[i].Close()
			}
		}(p)
	}
	wg.Wait()
	return d
}
