package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLean fails if the plugins, which run once per container, link the
// agent's heavy dependencies. etcd's client (gRPC, zap) is among them: it
// more than doubled the plugin's start-up time; the plugins reach etcd
// over its JSON gateway instead. knftables is too: its package
// initialisation compiles nine regular expressions the plugin never uses
// (80 page faults, about 1 ms, per start on the benchmark's VM); the
// plugin renders its nft scripts in package firewall and leaves knftables
// to duetd's NetworkPolicy table.
func TestLean(t *testing.T) {
	for _, pkg := range []string{".", "../duet-ipam"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, heavy := range []string{"go.etcd.io/etcd/server", "go.etcd.io/etcd/client", "google.golang.org/grpc", "go.uber.org/zap",
			"k8s.io/client-go", "github.com/osrg/gobgp", "github.com/prometheus/client_golang",
			"sigs.k8s.io/knftables"} {
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, heavy) {
					t.Errorf("%s links %s (%s)", pkg, heavy, dep)
				}
			}
		}
	}
}
