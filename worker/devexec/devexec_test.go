package devexec

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
)

// script writes an executable shell script standing in for the companion.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHandoff(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "tessera")
	working := script(t, dir, "tessera-cuda", `[ "$1" = probe-device ] && echo "$2: fine"`)
	failing := script(t, dir, "broken-cuda", `echo "Error in initialization: NoDevice" >&2; exit 1`)
	script(t, dir, "notexec", "")
	if err := os.Chmod(filepath.Join(dir, "notexec"), 0o644); err != nil {
		t.Fatal(err)
	}
	cpuOnly := func() []string { return []string{"cpu"} }
	cases := []struct {
		name     string
		device   string
		have     func() []string
		env      string
		execs    string // the companion exec'd, "" for none
		errParts []string
	}{
		{"cpu stays here", "cpu", cpuOnly, "", "", nil},
		{"unknown device stays here", "tpu:0", cpuOnly, "", "", nil},
		{"companion next to the executable", "cuda:0", cpuOnly, "", working, nil},
		{"bare cuda", "cuda", cpuOnly, "", working, nil},
		{"companion from the environment", "cuda:1", cpuOnly, working, working, nil},
		{"this executable is the companion", "cuda:3", func() []string { return []string{"cpu", "cuda", "cuda:0"} }, "", "", nil},
		{"companion fails its probe", "cuda:0", cpuOnly, failing, "",
			[]string{"no CUDA device", failing, "could not open cuda:0", "Error in initialization: NoDevice", "--device cpu"}},
		{"companion missing", "cuda:0", cpuOnly, filepath.Join(dir, "absent"), "",
			[]string{"no CUDA device", "absent", "make cuda", EnvCompanion}},
		{"companion not executable", "cuda:0", cpuOnly, filepath.Join(dir, "notexec"), "",
			[]string{"no CUDA device", "notexec", "make cuda"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var execd string
			var argv []string
			h := handoff{
				have:  tc.have,
				env:   func(k string) string { return map[string]string{EnvCompanion: tc.env}[k] },
				self:  func() (string, error) { return self, nil },
				probe: probe,
				exec: func(path string, a, _ []string) error {
					execd, argv = path, a
					return errors.New("exec stubbed")
				},
			}
			args := []string{"worker", "--device", tc.device, "--memory", "8GiB"}
			err := h.run(tc.device, args)
			if execd != tc.execs {
				t.Fatalf("exec'd %q, want %q", execd, tc.execs)
			}
			if tc.execs != "" {
				if want := append([]string{tc.execs}, args...); !slices.Equal(argv, want) {
					t.Errorf("argv %q, want %q", argv, want)
				}
				if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "exec stubbed") {
					t.Errorf("a failed exec returned %v", err)
				}
				return
			}
			if len(tc.errParts) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrNoDevice) {
				t.Fatalf("err = %v, want ErrNoDevice", err)
			}
			for _, part := range tc.errParts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not mention %q", err, part)
				}
			}
		})
	}
}

// TestHandoffExecs runs Handoff for real in a child process (this test
// binary again): the child becomes the companion, which prints its
// arguments.
func TestHandoffExecs(t *testing.T) {
	if os.Getenv("DEVEXEC_CHILD") == "1" {
		err := Handoff("cuda:0", []string{"worker", "--device", "cuda:0"})
		os.Stderr.WriteString("handoff returned: " + err.Error() + "\n")
		os.Exit(3)
	}
	dir := t.TempDir()
	companion := script(t, dir, "companion", `[ "$1" = probe-device ] && exit 0; echo "companion got: $*"; exit 7`)
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestHandoffExecs$")
	cmd.Env = append(os.Environ(), "DEVEXEC_CHILD=1", EnvCompanion+"="+companion)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("child: %v, want the companion's exit status 7; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "companion got: worker --device cuda:0") {
		t.Errorf("the companion did not get the command line; output:\n%s", out)
	}
}

func TestProbe(t *testing.T) {
	desc, err := Probe("cpu")
	if err != nil || !strings.HasPrefix(desc, "cpu") {
		t.Errorf("Probe(cpu) = %q, %v", desc, err)
	}
	if _, err := Probe("cuda:0"); !errors.Is(err, kernels.ErrUnknownBackend) {
		t.Errorf("Probe(cuda:0) in a build without CUDA: %v, want ErrUnknownBackend", err)
	}
}
