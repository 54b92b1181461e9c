package main

import (
	"fmt"
	"io"

	"github.com/tessera-llm/tessera/worker/devexec"
)

func init() {
	register(command{name: devexec.ProbeCommand, summary: "Open a compute device and print what it is (worker --device cuda:N runs it in tessera-cuda first).", run: runProbeDevice})
}

func runProbeDevice(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(devexec.ProbeCommand, devexec.ProbeCommand+" DEVICE", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one device, such as cuda:0", errUsage)
	}
	desc, err := devexec.Probe(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, desc)
	return nil
}
