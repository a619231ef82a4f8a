package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLean fails if the plugin, which runs once per container, links the
// agent's heavy dependencies.
func TestLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, heavy := range []string{"go.etcd.io/etcd/server", "k8s.io/client-go", "github.com/osrg/gobgp", "github.com/prometheus/client_golang"} {
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, heavy) {
				t.Errorf("cmd/duet links %s (%s)", heavy, dep)
			}
		}
	}
}
