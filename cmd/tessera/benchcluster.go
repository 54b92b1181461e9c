package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tessera-llm/tessera/coordinator/bench"
	"github.com/tessera-llm/tessera/local"
	"github.com/tessera-llm/tessera/shard/transport/netdelay"
	"github.com/tessera-llm/tessera/worker/model/modelbench"
)

func init() {
	register(command{name: "bench-cluster", summary: "Serve one model in four shapes on this host (1 worker, tp=2, pp=2) and compare their throughput and latency.", run: runBenchCluster})
}

// clusterSetup is one way to serve the benchmark model: a fixed plan over
// worker processes, each limited to threads OS threads (GOMAXPROCS).
type clusterSetup struct {
	name, plan string
	threads    []int
	// inFlight, when set, replaces --in-flight.
	inFlight int
	// relayed setups reach NATS, and their tensor-parallel peers, through
	// a netdelay relay per worker that holds each chunk for delay.
	relayed bool
	delay   time.Duration
}

// benchSetups are issue 17's four: two cores as one worker or split two
// ways, against one core alone; then pp=2 with one step at a time, to
// show what overlapping the stages gains.
var benchSetups = []clusterSetup{
	{name: "1 worker × 2 threads", plan: "pp=1,tp=1", threads: []int{2}},
	{name: "tp=2: 2 workers × 1 thread", plan: "pp=1,tp=2", threads: []int{1, 1}},
	{name: "pp=2: 2 workers × 1 thread", plan: "pp=2,tp=1", threads: []int{1, 1}},
	{name: "1 worker × 1 thread", plan: "pp=1,tp=1", threads: []int{1}},
	{name: "pp=2, one step at a time (--in-flight 1)", plan: "pp=2,tp=1", threads: []int{1, 1}, inFlight: 1},
}

// delaySetups are the first three of benchSetups with every worker's
// links delayed by d: what distance between hosts would cost them.
func delaySetups(d time.Duration) []clusterSetup {
	out := slices.Clone(benchSetups[:3])
	for i := range out {
		tag := fmt.Sprintf("%v apart", d)
		if d == 0 {
			tag = "relayed, no delay"
		}
		out[i].name += ", " + tag
		out[i].relayed, out[i].delay = true, d
	}
	return out
}

// benchShape is the model: a LLaMA shape of hidden 1024, 12 layers, 16
// heads over 4 kv heads, intermediate 2816, vocabulary 4096, bf16 weights
// (random; the speed does not depend on them).
const benchShape = "1024,12,16,4,2816,4096,bf16"

type setupResult struct {
	c1, cN bench.Report
	// late is how late the relays wrote chunks (p50, p99), for relayed
	// setups; the table shows the last round's, beside the medians.
	late []time.Duration
}

func runBenchCluster(args []string, stdout, stderr io.Writer) error {
	var dir, tokDir, delayList string
	var promptN, outN, c1Req, conc, inFlight, rounds int
	fs := newFlagSet("bench-cluster", "bench-cluster [--dir DIR] [--rounds 3] [--concurrency 32] [--in-flight 0] [--delays 0,100us,1ms]", stderr)
	fs.StringVar(&dir, "dir", "", "work directory for the model and logs (default: a temporary one, removed)")
	fs.StringVar(&tokDir, "tokenizer", defaultModel, "model directory whose tokenizer.json the benchmark model uses")
	fs.IntVar(&promptN, "prompt-tokens", 128, "prompt length in tokens")
	fs.IntVar(&outN, "output-tokens", 64, "tokens generated per request")
	fs.IntVar(&c1Req, "requests-c1", 4, "requests at concurrency 1")
	fs.IntVar(&conc, "concurrency", 32, "the high concurrency (as many requests)")
	fs.IntVar(&inFlight, "in-flight", 0, "the coordinator's --in-flight (0: one per pipeline stage)")
	fs.IntVar(&rounds, "rounds", 1, "rounds over the setups, alternating their order; the table has each figure's median")
	fs.StringVar(&delayList, "delays", "", "also serve 1 worker, tp=2 and pp=2 with each worker's links (to NATS and to its tensor-parallel peers) "+
		"through a relay that delays them by each of these one-way delays, e.g. 0,100us,1ms (0: the relay's own cost)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setups := slices.Clone(benchSetups)
	for _, f := range strings.Split(delayList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if f == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			return fmt.Errorf("%w: --delays: %q is not a duration ≥ 0 (e.g. 100us, 1ms)", errUsage, f)
		}
		setups = append(setups, delaySetups(d)...)
	}
	if len(setups) > len(benchSetups) && runtime.GOOS != "linux" {
		return fmt.Errorf("%w: --delays needs Linux (its relays wait in ppoll on threads of their own)", errUsage)
	}
	if len(setups) > len(benchSetups) {
		// The relays' threads return from blocking system calls and need
		// a P each at once; the load generator holds the default two.
		runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 32))
	}
	if promptN < 1 || outN < 1 || c1Req < 1 || conc < 1 || inFlight < 0 || rounds < 1 {
		return fmt.Errorf("%w: token and request counts and --rounds must be ≥ 1, --in-flight ≥ 0", errUsage)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "tessera-bench-cluster-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	model := filepath.Join(dir, "model")
	if err := writeBenchModel(model, tokDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "model: LLaMA %s (hidden,layers,heads,kv,inter,vocab,dtype) in %s\n", benchShape, model)
	fmt.Fprintf(stdout, "load: %d-token prompts, %d output tokens; concurrency 1 (%d requests) and %d (%d requests)\n",
		promptN, outN, c1Req, conc, conc)
	runs := make([][]setupResult, len(setups))
	for round := range rounds {
		for j := range setups {
			i := j
			if round%2 == 1 {
				i = len(setups) - 1 - j // alternate, so that drift in the host's load evens out
			}
			s := setups[i]
			r, err := benchSetup(self, dir, model, s, i, inFlight, bench.Config{PromptTokens: promptN, OutputTokens: outN}, c1Req, conc)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			runs[i] = append(runs[i], r)
			fmt.Fprintf(stderr, "round %d, %s: c=1 %.1f tok/s, ITL p50 %.1f ms; c=%d %.1f tok/s%s\n",
				round+1, s.name, r.c1.OutputTokS, r.c1.ITLp50ms, conc, r.cN.OutputTokS, lateness(r.late))
		}
	}
	results := make([]setupResult, len(setups))
	for i, rs := range runs {
		results[i].c1.OutputTokS = median(rs, func(r setupResult) float64 { return r.c1.OutputTokS })
		results[i].c1.ITLp50ms = median(rs, func(r setupResult) float64 { return r.c1.ITLp50ms })
		results[i].cN.OutputTokS = median(rs, func(r setupResult) float64 { return r.cN.OutputTokS })
		results[i].late = rs[len(rs)-1].late
	}
	printClusterTable(stdout, results, conc)
	printDelayTable(stdout, setups[len(benchSetups):], results[len(benchSetups):], conc)
	return nil
}

func lateness(l []time.Duration) string {
	if len(l) < 2 {
		return ""
	}
	return fmt.Sprintf("; relays late by p50 %v, p99 %v", l[0].Round(time.Microsecond), l[1].Round(time.Microsecond))
}

// printDelayTable prints the relayed setups: each figure beside the same
// setup's through relays with no delay, whose difference is what the
// delay cost.
func printDelayTable(w io.Writer, setups []clusterSetup, r []setupResult, conc int) {
	if len(setups) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| setup (links delayed each way) | c=1 ITL p50 | c=%d out tok/s | relays late by (p50 / p99, last round) |\n|---|---|---|---|\n", conc)
	for i, s := range setups {
		fmt.Fprintf(w, "| %s | %.1f ms | %.1f | %v / %v |\n", s.name, r[i].c1.ITLp50ms, r[i].cN.OutputTokS,
			r[i].late[0].Round(time.Microsecond), r[i].late[1].Round(time.Microsecond))
	}
}

// median is the median of f over rs (the mean of the middle two for an
// even count).
func median(rs []setupResult, f func(setupResult) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// writeBenchModel writes the random benchmark model with tokDir's
// tokenizer, unless dir already holds it.
func writeBenchModel(dir, tokDir string) error {
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		return nil
	}
	shape, dt, err := modelbench.ParseLlamaShape(benchShape)
	if err != nil {
		return err
	}
	if err := modelbench.WriteRandomLlama(dir, shape, dt, 1); err != nil {
		return err
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(tokDir, f))
		if os.IsNotExist(err) && f != "tokenizer.json" {
			continue
		}
		if err != nil {
			return fmt.Errorf("--tokenizer: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchSetup serves the model as s (tessera local without workers, plus
// one tessera worker process per entry of s.threads), then measures it.
func benchSetup(self, dir, model string, s clusterSetup, n, inFlight int, cfg bench.Config, c1Req, conc int) (setupResult, error) {
	if s.inFlight > 0 {
		inFlight = s.inFlight
	}
	logf, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("setup%d.log", n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return setupResult{}, err
	}
	defer logf.Close()
	coord := exec.Command(self, "local", "--model", model, "--workers", "0", "--plan", s.plan, "--listen", "127.0.0.1:0",
		"--cache-tokens", strconv.Itoa(max(8192, conc*(cfg.PromptTokens+cfg.OutputTokens+16))), "--in-flight", strconv.Itoa(inFlight),
		// A loaded host may take seconds for a 512-token prefill step on one
		// thread; this measures speed, not failure detection.
		"--step-timeout", "60s")
	coord.Stderr = logf
	out, err := coord.StdoutPipe()
	if err != nil {
		return setupResult{}, err
	}
	if err := coord.Start(); err != nil {
		return setupResult{}, err
	}
	procs := []*exec.Cmd{coord}
	var relays []*netdelay.Relay // closed after the workers, which would log their loss
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
		for _, r := range relays {
			r.Close()
		}
	}()
	addr := map[string]string{}
	sc := bufio.NewScanner(out)
	for len(addr) < 3 && sc.Scan() {
		for _, k := range []string{"etcd", "nats", "api"} {
			if v, ok := strings.CutPrefix(sc.Text(), k+": "); ok {
				addr[k] = v
			}
		}
	}
	if len(addr) < 3 {
		return setupResult{}, fmt.Errorf("tessera local did not print its addresses (see %s)", logf.Name())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	for i, th := range s.threads {
		args := []string{"worker", "--cluster", local.ClusterName, "--etcd", addr["etcd"], "--memory", "8GiB", "--id", fmt.Sprintf("bench-w%d", i)}
		if s.relayed {
			more, rs, err := relayWorker(addr["nats"], s.delay)
			relays = append(relays, rs...)
			if err != nil {
				return setupResult{}, err
			}
			args = append(args, more...)
		} else {
			args = append(args, "--nats", addr["nats"])
		}
		w := exec.Command(self, args...)
		w.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(th))
		w.Stdout, w.Stderr = logf, logf
		if err := w.Start(); err != nil {
			return setupResult{}, err
		}
		procs = append(procs, w)
	}
	api := addr["api"]
	if err := waitReady(api+"/ready", 2*time.Minute); err != nil {
		return setupResult{}, fmt.Errorf("%w (see %s)", err, logf.Name())
	}
	cfg.URL = api
	cfg.Timeout = 5 * time.Minute
	ctx := context.Background()
	warm := cfg
	warm.Concurrency, warm.Requests, warm.OutputTokens = 1, 1, 8
	if _, err := bench.Run(ctx, warm, nil); err != nil {
		return setupResult{}, err
	}
	var r setupResult
	cfg.Concurrency, cfg.Requests = 1, c1Req
	if r.c1, err = runClean(ctx, cfg); err != nil {
		return r, err
	}
	cfg.Concurrency, cfg.Requests = conc, conc
	if r.cN, err = runClean(ctx, cfg); err != nil || !s.relayed {
		return r, err
	}
	var late []time.Duration
	for _, rl := range relays {
		late = append(late, rl.Samples()...)
	}
	r.late = netdelay.Quantiles(late, 0.5, 0.99)
	return r, nil
}

// relayWorker starts one worker's relays, to NATS and in front of its
// all-reduce listener, and returns the worker flags that use them.
func relayWorker(natsURL string, d time.Duration) ([]string, []*netdelay.Relay, error) {
	u, err := url.Parse(natsURL)
	if err != nil {
		return nil, nil, err
	}
	toNATS, err := netdelay.Start("127.0.0.1:0", u.Host, d)
	if err != nil {
		return nil, nil, err
	}
	// The worker's mesh listens where the relay forwards, and advertises
	// the relay; a port is taken free and handed over, as the worker
	// must know its address before it starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, []*netdelay.Relay{toNATS}, err
	}
	mesh := ln.Addr().String()
	ln.Close()
	toMesh, err := netdelay.Start("127.0.0.1:0", mesh, d)
	if err != nil {
		return nil, []*netdelay.Relay{toNATS}, err
	}
	return []string{"--nats", "nats://" + toNATS.Addr(), "--tp-listen", mesh, "--tp-advertise", toMesh.Addr()},
		[]*netdelay.Relay{toNATS, toMesh}, nil
}

// runClean runs one load and fails when any request failed: a partial
// run's figures would mislead.
func runClean(ctx context.Context, cfg bench.Config) (bench.Report, error) {
	rep, err := bench.Run(ctx, cfg, nil)
	if err != nil {
		return bench.Report{}, err
	}
	if rep.Failed > 0 {
		return *rep, fmt.Errorf("%d of %d requests failed: %s", rep.Failed, rep.Requests, rep.FirstError)
	}
	return *rep, nil
}

func waitReady(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v", url, within)
}

// printClusterTable prints the measurements and issue 17's acceptance
// ratios: what splitting over two 1-thread workers keeps of one worker
// with both threads (or with one).
func printClusterTable(w io.Writer, r []setupResult, conc int) {
	fmt.Fprintf(w, "\n| setup | c=1 out tok/s | c=1 ITL p50 | c=%d out tok/s |\n|---|---|---|---|\n", conc)
	for i, s := range benchSetups {
		fmt.Fprintf(w, "| %s | %.1f | %.1f ms | %.1f |\n", s.name, r[i].c1.OutputTokS, r[i].c1.ITLp50ms, r[i].cN.OutputTokS)
	}
	two, tp, pp, one := r[0], r[1], r[2], r[3]
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	fmt.Fprintf(w, "\n| ratio | value | target |\n|---|---|---|\n")
	fmt.Fprintf(w, "| pp=2 c=%d tok/s ÷ 1×2 threads | %.2f | ≥ 0.90 |\n", conc, ratio(pp.cN.OutputTokS, two.cN.OutputTokS))
	fmt.Fprintf(w, "| pp=2 c=1 ITL ÷ 1×1 thread | %.2f | ≤ 1.15 |\n", ratio(pp.c1.ITLp50ms, one.c1.ITLp50ms))
	fmt.Fprintf(w, "| tp=2 c=1 ITL ÷ 1×2 threads | %.2f | ≤ 1.15 |\n", ratio(tp.c1.ITLp50ms, two.c1.ITLp50ms))
	fmt.Fprintf(w, "| tp=2 c=%d tok/s ÷ 1×2 threads | %.2f | ≥ 0.95 |\n", conc, ratio(tp.cN.OutputTokS, two.cN.OutputTokS))
	fmt.Fprintf(w, "| pp=2 c=%d tok/s, overlapped ÷ one step at a time | %.2f | |\n", conc, ratio(pp.cN.OutputTokS, r[4].cN.OutputTokS))
}
