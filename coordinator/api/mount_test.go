package api

import (
	"net/http"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// A mounted handler shares the listener; RequireKey guards it with the
// API key exactly as /v1/ is guarded.
func TestMountRequireKey(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.APIKey = "sekret" })
	ts.api.Mount("GET /open", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	ts.api.Mount("GET /guarded", ts.api.RequireKey(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/open", "", http.StatusNoContent},
		{"/guarded", "", http.StatusUnauthorized},
		{"/guarded", "Bearer wrong", http.StatusUnauthorized},
		{"/guarded", "Bearer sekret", http.StatusNoContent},
	} {
		req, _ := http.NewRequest("GET", ts.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.auth, resp.StatusCode, tc.want)
		}
	}
}
