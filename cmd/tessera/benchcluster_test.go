package main

import (
	"strings"
	"testing"
)

// Bad counts for --in-flight and bench-cluster's loads are usage errors
// (exit 2, naming the flag) before anything starts.
func TestInFlightAndBenchClusterFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"local", "--workers", "0", "--in-flight", "-1"}, "--in-flight"},
		{[]string{"coordinator", "--in-flight", "-2"}, "--in-flight"},
		{[]string{"bench-cluster", "--in-flight", "-1"}, "--in-flight"},
		{[]string{"bench-cluster", "--concurrency", "0"}, "request counts"},
		{[]string{"bench-cluster", "--delays", "0,fast"}, "--delays"},
		{[]string{"bench-cluster", "--delays", "-1ms"}, "--delays"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.flag) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.args, code, stderr, tc.flag)
		}
	}
}
