package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tessera-llm/tessera/local"
)

// requireChromium makes a missing browser fail the console test instead
// of skipping it; .ci/run sets it after installing Debian's chromium.
const requireChromium = "TESSERA_REQUIRE_CHROMIUM"

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(requireChromium) != "" {
		t.Fatalf("%s is set but no chromium is on PATH (apt-get install chromium)", requireChromium)
	}
	t.Skip("the console test drives a headless Chromium; none is installed (apt-get install chromium; .ci/run does)")
	return ""
}

// TestConsole drives the operator console in headless Chromium against
// `tessera local` (two in-process workers) and a third worker process, all
// behind --api-key: the page asks for the key; the map shows the three
// workers and the plan grid; killing the worker process shows it lost and
// then the new plan; a playground prompt streams shaded tokens with their
// alternatives, self-consistency shows its chains and vote, chat answers;
// the throughput plot gains points during a `tessera bench` run. No request
// leaves for another host, and the API refuses calls without the key. A
// screenshot of each view goes to a temporary directory.
func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a browser")
	}
	browser := chromiumPath(t)
	const key = "console-e2e-key"
	addr := freeAddr(t)
	api := "http://" + addr
	lc := spawn(t, "local", "local", "--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--workers", "2",
		"--listen", addr, "--api-key", key, "--cache-tokens", "2048", "--step-timeout", "2s")
	etcdURL, natsURL := localEndpoints(t, lc)
	extra := spawn(t, "w-ext", "worker", "--cluster", local.ClusterName, "--etcd", etcdURL, "--nats", natsURL, "--id", "w-ext",
		"--listen", "127.0.0.1:0")
	waitReadyWith(t, api, key, 3)

	// Without the key the console's data and the API answer 401.
	for _, path := range []string{"/console/api/state", "/console/api/events", "/v1/models"} {
		if st := status(api + path); st != http.StatusUnauthorized {
			t.Errorf("GET %s without the key: %d, want 401", path, st)
		}
	}
	if st := status(api + "/console/"); st != http.StatusOK {
		t.Errorf("GET /console/ (the page itself): %d, want 200", st)
	}

	shots, err := os.MkdirTemp("", "tessera-console-shots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots: %s", shots)
	fmt.Printf("console screenshots: %s\n", shots)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.WindowSize(1440, 1000))
	// The whole browser lives under one deadline.
	bctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(bctx, opts...)
	defer cancelAlloc()
	var mu sync.Mutex
	var requests []string
	ctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}))
	defer cancelBrowser()
	b := &page{t: t, ctx: ctx, shots: shots}
	b.run(chromedp.Navigate(api + "/console/"))

	// The key, asked once.
	b.waitFor(`!document.querySelector('#key-dialog').hidden`, "the key dialog")
	b.shot("key")
	b.run(chromedp.SendKeys(chromedp.CSS("#key-input"), key), click("#key-submit"))
	b.waitFor(`document.querySelector('#key-dialog').hidden`, "the key dialog to close")

	// The map: three workers, a plan over all three.
	b.waitFor(`document.querySelectorAll('#workers tr[data-state="up"]').length === 3 && document.querySelectorAll('#plan-grid .cell').length === 3`,
		"three workers and a three-rank plan")
	b.waitFor(`[...document.querySelectorAll('#workers tr[data-state="up"]')].every(r => r.textContent.includes('serving plan v'))`, "every worker serving")
	version := b.number(`+document.querySelector('#plan-grid').dataset.version`)
	if got := b.text(`#plan-grid`); !strings.Contains(got, "w-ext") || !strings.Contains(got, "ALiBi") || !strings.Contains(got, "vocab") {
		t.Errorf("the plan grid lacks the external worker, ALiBi slopes or vocabulary slices:\n%s", got)
	}
	b.shot("cluster")

	// Kill the external worker: lost first, then a new plan without it.
	extra.stop(syscall.SIGKILL)
	b.waitFor(`!!document.querySelector('#workers tr[data-worker="w-ext"][data-state="lost"]')`, "w-ext marked lost")
	if ev := b.text(`#events`); !strings.Contains(ev, "w-ext lost") {
		t.Errorf("the events do not say w-ext was lost:\n%s", ev)
	}
	b.waitFor(fmt.Sprintf(`+document.querySelector('#plan-grid').dataset.version > %d && document.querySelectorAll('#plan-grid .cell').length === 2 && !document.querySelector('#plan-grid .cell[data-worker="w-ext"]')`, int(version)),
		"a new plan over the two remaining workers")
	if hist := b.text(`#plans`); !strings.Contains(hist, "after w-ext lost") {
		t.Errorf("the plan history does not give w-ext's loss as the cause:\n%s", hist)
	}
	b.waitFor(`document.querySelector('#h-ready').textContent.startsWith('serving')`, "the new plan serving")
	// The header can show the new version before the API admits work
	// under it (a loaded machine left a gap long enough to click into);
	// the playground's request is only meant to test the playground.
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	b.shot("cluster-replanned")

	// Playground: a streamed completion, each token shaded, alternatives on hover.
	b.run(click(`a[data-view="playground"]`), set("#pg-max", "48"), set("#pg-temp", "0"), click("#pg-run"))
	b.waitFor(`document.querySelector('#pg-stats').textContent.includes('finish:')`, "the completion to finish")
	if n := b.number(`document.querySelectorAll('#pg-output .tok[data-p]').length`); n < 10 {
		t.Errorf("the playground shows %v shaded tokens, want many (max_tokens 48)", n)
	}
	if chunks := b.number(`+document.querySelector('#pg-output').dataset.chunks`); chunks < 2 {
		t.Errorf("the completion came in %v chunk(s): not streamed", chunks)
	}
	x := b.number(`(() => { const r = document.querySelector('#pg-output .tok').getBoundingClientRect(); return r.x + r.width / 2 })()`)
	y := b.number(`(() => { const r = document.querySelector('#pg-output .tok').getBoundingClientRect(); return r.y + r.height / 2 })()`)
	b.run(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y))
	b.waitFor(`!document.querySelector('#tip').hidden && document.querySelectorAll('#tip tr').length >= 2`, "a tooltip with the top alternatives")
	b.shot("playground")
	b.run(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 5, 400))

	// Self-consistency: k chains and the vote.
	b.run(click(`#pg-mode input[value="consistency"] + span`), set("#pg-k", "3"), set("#pg-max", "16"), set("#pg-temp", "0.9"),
		set("#pg-pattern", `(\w+)`), click("#pg-run"))
	b.waitFor(`!document.querySelector('#pg-vote').hidden && document.querySelectorAll('#pg-output .chain').length === 3`, "three chains and a vote")
	if v := b.text(`#pg-vote`); !strings.Contains(v, "Majority answer") {
		t.Errorf("the vote reads %q", v)
	}
	b.shot("consistency")

	// Chat through the model's template.
	b.run(click(`#pg-mode input[value="chat"] + span`), set("#pg-prompt", "def mean(x):"), set("#pg-max", "16"), click("#pg-run"))
	b.waitFor(`document.querySelectorAll('#pg-output .msg.assistant .tok').length > 0 && document.querySelector('#pg-stats').textContent.includes('finish:')`,
		"an assistant reply")
	b.shot("chat")

	// The throughput plot gains points while `tessera bench` runs.
	b.run(click(`a[data-view="metrics"]`))
	before := b.number(`+document.querySelector('#chart-tokens').dataset.points`)
	benchDone := make(chan string, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run([]string{"bench", "--url", api, "--api-key", key, "--concurrency", "4", "--requests", "12",
			"--output-tokens", "48", "--prompt-tokens", "16"}, &out, &errb)
		benchDone <- fmt.Sprintf("exit %d\n%s%s", code, out.String(), errb.String())
	}()
	b.waitFor(fmt.Sprintf(`+document.querySelector('#chart-tokens').dataset.points >= %d`, int(before)+2), "two more throughput points")
	report := <-benchDone
	if !strings.HasPrefix(report, "exit 0") {
		t.Errorf("bench: %s", report)
	}
	b.waitFor(`+document.querySelector('#chart-ttft').dataset.points > 0 && +document.querySelector('#chart-requests').dataset.points > 0`, "latency and request points")
	b.shot("metrics")

	mu.Lock()
	defer mu.Unlock()
	for _, raw := range requests {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "data" && u.Host != addr) {
			t.Errorf("the page requested %s: not the coordinator (%s)", raw, addr)
		}
	}
	if len(requests) < 5 {
		t.Errorf("saw %d requests; the network listener is not working", len(requests))
	}
}

// localEndpoints reads the etcd and NATS URLs `tessera local` prints.
func localEndpoints(t *testing.T, p *process) (etcdURL, natsURL string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(p.out.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "etcd: "); ok {
				etcdURL = v
			}
			if v, ok := strings.CutPrefix(l, "nats: "); ok {
				natsURL = v
			}
		}
		if etcdURL != "" && natsURL != "" {
			return etcdURL, natsURL
		}
	}
	t.Fatalf("tessera local did not print its etcd and NATS URLs:\n%s", p.out)
	return "", ""
}

// waitReadyWith waits until the API serves a plan over n workers.
func waitReadyWith(t *testing.T, api, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", api+"/console/api/state", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if status(api+"/ready") == 200 && strings.Count(buf.String(), `"state":"up"`) == n && strings.Count(buf.String(), `serving plan v`) == n {
			return
		}
	}
	t.Fatalf("the cluster at %s did not serve with %d workers", api, n)
}

// page drives one browser tab.
type page struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func (b *page) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatal(err)
	}
}

func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

func set(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), v)
}

// eval evaluates a JavaScript expression into a T.
func eval[T any](b *page, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition for up to 30 s.
func (b *page) waitFor(cond, what string) {
	b.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond))
		if err != nil {
			b.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
	}
	b.shot("failed")
	b.t.Fatalf("gave up waiting for %s (%s)", what, cond)
}

func (b *page) number(expr string) float64 {
	b.t.Helper()
	return eval[float64](b, expr)
}

func (b *page) text(sel string) string {
	b.t.Helper()
	return eval[string](b, fmt.Sprintf(`document.querySelector(%q).innerText`, sel))
}

// shot writes a PNG of the whole page.
func (b *page) shot(name string) {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Error(err)
	}
}
