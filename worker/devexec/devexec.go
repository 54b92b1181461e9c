// Package devexec runs a command that asks for a CUDA device in the
// executable that has the CUDA backend.
//
// gorgonia.org/cu, the driver binding of kernels/cuda, calls cuInit in its
// package init and exits the process when that fails, and a binary linked
// with -lcuda does not even load on a host without libcuda.so.1. So the
// CUDA backend lives in a companion executable: `make cuda` builds
// bin/tessera (no CUDA, starts anywhere) and bin/tessera-cuda (the same
// command with -tags cuda). Handoff, called by a command before it does
// anything else, probes the companion and replaces the current process
// with it; when the companion is missing or cannot open the device, it
// reports ErrNoDevice with what to do, and nothing has started yet.
package devexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tessera-llm/tessera/kernels"
)

// ErrNoDevice reports a CUDA device that this host cannot provide.
var ErrNoDevice = errors.New("no CUDA device")

const (
	// EnvCompanion names the companion executable, overriding the one
	// next to the running executable.
	EnvCompanion = "TESSERA_CUDA_BIN"
	// Suffix turns the running executable's path into the companion's:
	// bin/tessera → bin/tessera-cuda.
	Suffix = "-cuda"
	// ProbeCommand is the companion's subcommand that only opens a device
	// (and so initialises the driver, loads the PTX and creates a cuBLAS
	// handle) and prints what it found.
	ProbeCommand = "probe-device"
	// probeTimeout bounds the probe; the driver's first initialisation on
	// a large GPU takes seconds, not minutes.
	probeTimeout = 2 * time.Minute
)

// IsCUDA reports whether a --device value names a CUDA device.
func IsCUDA(device string) bool { return device == "cuda" || strings.HasPrefix(device, "cuda:") }

// Handoff hands the command line args (without the program name) to the
// CUDA companion when device is a CUDA device and this executable has no
// CUDA backend: on success it does not return. It returns nil, doing
// nothing, for any other device or when this executable is the companion
// (the caller then opens the device itself), and an error wrapping
// ErrNoDevice when the companion is missing or fails its probe.
func Handoff(device string, args []string) error {
	return handoff{
		have:  kernels.Names,
		env:   os.Getenv,
		self:  os.Executable,
		probe: probe,
		exec:  syscall.Exec,
	}.run(device, args)
}

// handoff is Handoff with its effects behind fields, for tests.
type handoff struct {
	have  func() []string
	env   func(string) string
	self  func() (string, error)
	probe func(ctx context.Context, companion, device string) error
	exec  func(path string, argv, env []string) error
}

func (h handoff) run(device string, args []string) error {
	if !IsCUDA(device) {
		return nil
	}
	for _, n := range h.have() {
		if IsCUDA(n) {
			return nil // this executable is the companion
		}
	}
	companion, err := h.companion()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if err := h.probe(ctx, companion, device); err != nil {
		return fmt.Errorf("%w: %s could not open %s: %v; check the driver and the device (nvidia-smi), or use --device cpu",
			ErrNoDevice, companion, device, err)
	}
	err = h.exec(companion, append([]string{companion}, args...), os.Environ())
	return fmt.Errorf("%w: starting %s: %v", ErrNoDevice, companion, err)
}

// companion is the CUDA executable: $TESSERA_CUDA_BIN, or the running
// executable's path (links resolved) plus Suffix.
func (h handoff) companion() (string, error) {
	path := h.env(EnvCompanion)
	if path == "" {
		self, err := h.self()
		if err != nil {
			return "", fmt.Errorf("%w: locating this executable: %v", ErrNoDevice, err)
		}
		if resolved, err := filepath.EvalSymlinks(self); err == nil {
			self = resolved
		}
		path = self + Suffix
	}
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: this tessera has no CUDA backend, and its CUDA companion %s is not an executable file "+
			"(build both with 'make cuda', or set %s)", ErrNoDevice, path, EnvCompanion)
	}
	return path, nil
}

// probe runs `companion probe-device device` and returns its output as the
// error when it fails: the driver's own words (gorgonia.org/cu prints
// "Error in initialization" and the CUDA error before exiting), or the
// loader's when libcuda.so.1 is missing.
func probe(ctx context.Context, companion, device string) error {
	out, err := exec.CommandContext(ctx, companion, ProbeCommand, device).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.Join(strings.Fields(string(out)), " ")
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	if msg == "" {
		return err
	}
	return fmt.Errorf("%v: %s", err, msg)
}

// Probe opens device in this executable and describes it: the probe the
// companion answers. It returns an error when the device does not open.
func Probe(device string) (string, error) {
	b, err := kernels.Open(device)
	if err != nil {
		return "", err
	}
	desc := b.Name()
	if d, ok := b.(interface{ Device() string }); ok {
		desc += ": " + d.Device()
	}
	if c, ok := b.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			return "", fmt.Errorf("closing %s: %w", b.Name(), err)
		}
	}
	return desc, nil
}
