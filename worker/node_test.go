package worker

import (
	"os"
	"testing"
)

// Workers on one host get distinct default ids from their device and the
// port they bound.
func TestDefaultID(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct{ device, addr, want string }{
		{"cpu", "127.0.0.1:40517", host + "-cpu-40517"},
		{"cuda:1", "127.0.0.1:40518", host + "-cuda1-40518"},
		{"cuda:1", "[::1]:7070", host + "-cuda1-7070"},
	} {
		if got := DefaultID(tc.device, tc.addr); got != tc.want {
			t.Errorf("DefaultID(%q, %q) = %q, want %q", tc.device, tc.addr, got, tc.want)
		}
	}
}
