package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Helm chart starts the binary with flags; each must exist, or a
// deployment would fail at start. The chart's own test renders it; this
// one ties its arguments to the commands.
func TestChartFlagsExist(t *testing.T) {
	templates := filepath.Join(repoRoot, "deploy/helm/tessera/templates")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(templates, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	helpers := read("_helpers.tpl")
	start := strings.Index(helpers, `define "tessera.clientArgs"`)
	end := strings.Index(helpers[start:], "{{- end -}}")
	if start < 0 || end < 0 {
		t.Fatal("_helpers.tpl has no tessera.clientArgs block")
	}
	shared := helpers[start : start+end]
	flag := regexp.MustCompile(`- --([a-z][a-z0-9-]*)`)
	for _, tc := range []struct{ command, template string }{
		{"coordinator", "coordinator.yaml"},
		{"worker", "worker.yaml"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			code, _, help := runCLI(t, tc.command, "--help")
			if code != 0 {
				t.Fatalf("%s --help: exit %d", tc.command, code)
			}
			found := flag.FindAllStringSubmatch(read(tc.template)+shared, -1)
			if len(found) < 5 {
				t.Fatalf("found only %d flags in %s: the pattern lost its point", len(found), tc.template)
			}
			for _, m := range found {
				if !strings.Contains(help, "  -"+m[1]+" ") && !strings.Contains(help, "  -"+m[1]+"\n") {
					t.Errorf("the chart passes --%s to tessera %s, which has no such flag", m[1], tc.command)
				}
			}
		})
	}
}
