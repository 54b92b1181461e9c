//go:build cuda

package devexec_test

// The acceptance of the CUDA build on a host without a GPU: `make cuda`'s
// bin/tessera starts anywhere and hands --device cuda:N to bin/tessera-cuda
// only after a probe. This file only builds with -tags cuda (make
// cuda-check, which has the toolkit) because it builds the companion; the
// test binary itself does not link gorgonia.org/cu, so it runs here.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// build makes dir/tessera and dir/tessera-cuda as `make cuda` does (the
// cgo flags come from make's environment).
func build(t *testing.T, root, dir string) {
	t.Helper()
	for _, b := range []struct{ out, tags string }{{"tessera", ""}, {"tessera-cuda", "cuda"}} {
		cmd := exec.Command("go", "build", "-tags", b.tags, "-o", filepath.Join(dir, b.out), "./cmd/tessera")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build -tags %q: %v\n%s", b.tags, err, out)
		}
	}
}

// run runs a command to completion within a minute.
func run(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return o.String(), e.String(), code
}

// start runs a long-lived command and returns a channel of its output
// lines (stdout and stderr); the process is killed at the end of the test.
func start(t *testing.T, bin string, args ...string) <-chan string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more
			}
		}
	}()
	return lines
}

// waitFor returns the first line containing want.
func waitFor(t *testing.T, lines <-chan string, want string) string {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-deadline:
			t.Fatalf("no line containing %q within two minutes", want)
		}
	}
}

func TestCUDABuildStartsWithoutGPU(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	build(t, root, dir)
	tessera := filepath.Join(dir, "tessera")

	t.Run("help", func(t *testing.T) {
		out, _, code := run(t, tessera, "--help")
		if code != 0 || !strings.Contains(out, "worker") || !strings.Contains(out, "probe-device") {
			t.Errorf("--help exited %d:\n%s", code, out)
		}
	})

	// local serves the bundled model; its join line gives the cluster that
	// the workers below try to join.
	lines := start(t, tessera, "local", "--model", filepath.Join(root, "models/docbloom-3m"),
		"--workers", "1", "--listen", "127.0.0.1:0")
	api := strings.TrimPrefix(waitFor(t, lines, "api: http://"), "api: ")
	join := strings.Fields(strings.TrimPrefix(waitFor(t, lines, "join: "), "join: tessera "))
	t.Run("local", func(t *testing.T) {
		// The API answers 503 until the workers have loaded their shards.
		body := `{"prompt": "Parameters", "max_tokens": 4, "temperature": 0}`
		var resp *http.Response
		for deadline := time.Now().Add(2 * time.Minute); ; {
			var err error
			resp, err = http.Post(api+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				break
			}
			resp.Body.Close()
			time.Sleep(200 * time.Millisecond)
		}
		defer resp.Body.Close()
		var got struct {
			Choices []struct{ Text string } `json:"choices"`
			Usage   struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("completion: status %d, %v", resp.StatusCode, err)
		}
		if len(got.Choices) != 1 || got.Usage.CompletionTokens != 4 {
			t.Errorf("completion: %+v, want one choice of 4 tokens", got)
		}
	})
	worker := func(device string) []string {
		return append(append([]string{}, join...), "--device", device, "--listen", "127.0.0.1:0", "--id", "devexec-"+device)
	}

	t.Run("worker cpu", func(t *testing.T) {
		waitFor(t, start(t, tessera, worker("cpu")...), `"worker up"`)
	})

	cases := []struct {
		name, bin string
		want      []string
	}{
		// This host has libcuda1 and no GPU: the companion's probe fails in
		// gorgonia.org/cu's init.
		{"worker cuda:0", tessera, []string{"no CUDA device", "tessera-cuda could not open cuda:0", "--device cpu"}},
		{"worker cuda:0 without the companion", "", []string{"no CUDA device", "no CUDA backend", "make cuda"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := tc.bin
			if bin == "" {
				alone := t.TempDir()
				bin = filepath.Join(alone, "tessera")
				if err := os.Link(tessera, bin); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now()
			_, stderr, code := run(t, bin, worker("cuda:0")...)
			if code != 2 {
				t.Errorf("exit status %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "worker up") {
				t.Errorf("the worker started or panicked:\n%s", stderr)
			}
			t.Logf("exit %d after %v: %s", code, time.Since(t0).Round(time.Millisecond), stderr)
		})
	}
}
