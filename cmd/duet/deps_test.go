package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLean fails if the plugins, which run once per container, link the
// agent's heavy dependencies. etcd's client (gRPC, zap) is among them: it
// more than doubled the plugin's start-up time; the plugins reach etcd
// over its JSON gateway instead.
func TestLean(t *testing.T) {
	for _, pkg := range []string{".", "../duet-ipam"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, heavy := range []string{"go.etcd.io/etcd/server", "go.etcd.io/etcd/client", "google.golang.org/grpc", "go.uber.org/zap",
			"k8s.io/client-go", "github.com/osrg/gobgp", "github.com/prometheus/client_golang"} {
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, heavy) {
					t.Errorf("%s links %s (%s)", pkg, heavy, dep)
				}
			}
		}
	}
}
