package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/spec"
)

// requireKey stands in for api.Server.RequireKey.
func requireKey(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func get(t *testing.T, url string, auth bool) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer k")
	}
	resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// The page is open and embedded; the data needs the key; every answer
// carries a policy that keeps the page on this origin.
func TestServesPageAndGuardsData(t *testing.T) {
	c := New(Config{Cluster: "c", RequireKey: requireKey, Metrics: prometheus.NewRegistry()})
	srv := httptest.NewServer(c)
	defer srv.Close()
	for _, tc := range []struct {
		path      string
		auth      bool
		status    int
		mentions  string
		mediaType string
	}{
		{"/console", false, http.StatusMovedPermanently, "", ""},
		{"/console/", false, http.StatusOK, `<script type="module" src="app.js">`, "text/html"},
		{"/console/app.js", false, http.StatusOK, "readSSE", "javascript"},
		{"/console/vendor/uPlot.iife.min.js", false, http.StatusOK, "uPlot", "javascript"},
		{"/console/vendor/uPlot.LICENSE", false, http.StatusOK, "MIT", ""},
		{"/console/api/state", false, http.StatusUnauthorized, "", ""},
		{"/console/api/events", false, http.StatusUnauthorized, "", ""},
		{"/console/api/state", true, http.StatusOK, "null", "application/json"},
	} {
		resp := get(t, srv.URL+tc.path, tc.auth)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.mentions) ||
			!strings.Contains(resp.Header.Get("Content-Type"), tc.mediaType) {
			t.Errorf("GET %s (key %v): %d %q %.80q; want %d, %q, mentioning %q", tc.path, tc.auth, resp.StatusCode,
				resp.Header.Get("Content-Type"), body, tc.status, tc.mediaType, tc.mentions)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
}

// snapshot is the part of the state the tests read.
type snapshot struct {
	Role, Leader string
	Workers      []struct{ ID, State string }
	PlanVersion  uint64 `json:"plan_version"`
	Plans        []struct {
		Version uint64
		Cause   string
	}
	Events []struct{ Kind, Text string }
}

// events follows /console/api/events and returns the states and samples
// it sees on channels.
func events(t *testing.T, ctx context.Context, url string) (<-chan snapshot, <-chan Sample) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	states, samples := make(chan snapshot, 64), make(chan Sample, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				event = v
				continue
			}
			data, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				continue
			}
			switch event {
			case "state":
				var s snapshot
				if json.Unmarshal([]byte(data), &s) == nil {
					states <- s
				}
			case "sample":
				var s Sample
				if json.Unmarshal([]byte(data), &s) == nil {
					select {
					case samples <- s:
					default:
					}
				}
			}
		}
	}()
	return states, samples
}

// await reads states until ok accepts one.
func await(t *testing.T, states <-chan snapshot, what string, ok func(snapshot) bool) snapshot {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-states:
			if ok(s) {
				return s
			}
		case <-timeout:
			t.Fatalf("no state with %s", what)
		}
	}
}

// A standby's console follows a real etcd: workers join and are lost,
// plans come with their causes, the leader is named, and samples stream.
func TestClusterMapFollowsEtcd(t *testing.T) {
	dir := t.TempDir()
	_, endpoint, stop, err := registry.Embedded(dir, registry.EmbedNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli, err := registry.Dial(ctx, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const cluster = "map"
	c := New(Config{Cluster: cluster, Model: "docbloom-3m", ID: "standby-1", Etcd: cli, Metrics: prometheus.NewRegistry(),
		RequireKey: requireKey, Interval: 50 * time.Millisecond, Poll: 100 * time.Millisecond})

	var regs []*registry.Registration
	for _, id := range []string{"w0", "w1"} {
		r, err := registry.Register(ctx, cli, cluster, &tesserav1.WorkerInfo{Id: id, Address: "127.0.0.1:1", Backend: "cpu", Device: "cpu", MemoryBytes: 1 << 30}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
	}
	// The console starts with the workers registered and no plan yet.
	runDone := make(chan struct{})
	go func() { c.Run(ctx); close(runDone) }()
	srv := httptest.NewServer(c)
	defer srv.Close()
	states, samples := events(t, ctx, srv.URL+"/console/api/events")
	lead, err := registry.Campaign(ctx, cli, cluster, "leader-1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Load("../../models/docbloom-3m")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(v uint64, ids ...string) {
		var ws []plan.Worker
		for _, id := range ids {
			ws = append(ws, plan.Worker{ID: id, Memory: 1 << 30})
		}
		p, err := plan.New(s, ws, plan.WithVersion(v), plan.WithDTypeBytes(2))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(p)
		if err := lead.PutPlan(ctx, v, raw); err != nil {
			t.Fatal(err)
		}
	}
	await(t, states, "two workers up", func(s snapshot) bool { return len(s.Workers) == 2 })
	publish(1, "w0", "w1")
	st := await(t, states, "plan v1 and the leader", func(s snapshot) bool { return s.PlanVersion == 1 && s.Leader == "leader-1" })
	if st.Role != "standby" {
		t.Errorf("role %q, want standby (Leader is not set)", st.Role)
	}

	regs[1].Close() // revoked: the registration leaves etcd at once
	st = await(t, states, "w1 lost", func(s snapshot) bool {
		return len(s.Workers) == 2 && s.Workers[1].ID == "w1" && s.Workers[1].State == "lost"
	})
	if !slices.ContainsFunc(st.Events, func(e struct{ Kind, Text string }) bool {
		return e.Kind == "lost" && strings.Contains(e.Text, "w1")
	}) {
		t.Errorf("events %+v: none says w1 was lost", st.Events)
	}
	publish(2, "w0")
	st = await(t, states, "plan v2", func(s snapshot) bool { return s.PlanVersion == 2 })
	if n := len(st.Plans); n != 2 || st.Plans[1].Cause != "re-plan after w1 lost" || st.Plans[0].Cause != "the first plan this console saw" {
		t.Errorf("plan history %+v", st.Plans)
	}
	select {
	case <-samples:
	case <-time.After(5 * time.Second):
		t.Error("no sample streamed")
	}
	regs[0].Close()
	cancel()
	select {
	case <-runDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
