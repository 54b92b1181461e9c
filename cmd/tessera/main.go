// Command tessera is the single binary of a Tessera cluster: it runs a
// coordinator, a worker, a whole local cluster, or one-shot tools such as
// generate and logits. Each subcommand lives in its own file and registers
// itself in init.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. run gets the arguments after the name.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("tessera: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// version is stamped into worker registrations.
const version = "0.1.0"

// errUsage marks an error the user fixes by reading --help; main exits 2.
var errUsage = errors.New("usage error")

func usage(w io.Writer) {
	fmt.Fprintln(w, "tessera: serve transformer language models across a cluster.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: tessera <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'tessera <command> --help' for a command's flags.")
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tessera: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "tessera %s: %v\n", c.name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "tessera %s: %v\n", c.name, err)
		return 1
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// newFlagSet makes a FlagSet whose --help prints the summary and the flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tessera "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tessera %s\n\n", synopsis)
		if c, ok := commands[name]; ok {
			fmt.Fprintln(stderr, c.summary)
			fmt.Fprintln(stderr)
		}
		fmt.Fprintln(stderr, "Flags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseIDs reads a comma-separated list of non-negative token ids.
func parseIDs(s string) ([]int32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	ids := make([]int32, 0, len(parts))
	for _, p := range parts {
		var v int64
		p = strings.TrimSpace(p)
		if _, err := fmt.Sscan(p, &v); err != nil || v < 0 || v > 1<<31-1 || fmt.Sprint(v) != p {
			return nil, fmt.Errorf("%w: %q is not a token id (want a comma-separated list of non-negative integers)", errUsage, p)
		}
		ids = append(ids, int32(v))
	}
	return ids, nil
}
