// The CNI versions the README promises (0.4.0, 1.0.0, 1.1.0): ADD answers
// in the configuration's version, a repeated ADD returns the same
// addresses, CHECK passes with the cached result, DEL cleans up.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestCNIVersions(t *testing.T) {
	kerneltest.RequireRoot(t)
	for i, version := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(version, func(t *testing.T) {
			kerneltest.Forwarding(t)
			store := filepath.Join(t.TempDir(), "duet.db")
			conf := map[string]any{"type": "duet", "pools": testPools("dual", 0x18+i), "datastore": map[string]any{"path": store}}
			n := newNetwork(t, version, maps.Clone(conf), store)
			p := n.newPod(t)
			r, err := n.cni.AddNetworkList(context.Background(), n.list, p.rt())
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if r.Version() != version {
				t.Errorf("result version %s, want %s", r.Version(), version)
			}
			if p.res, err = current.NewResultFromResult(r); err != nil {
				t.Fatal(err)
			}
			first := ipStrings(p.res)
			if len(first) != 2 {
				t.Errorf("ADD gave %v, want an IPv6 and an IPv4 address", first)
			}
			noTentative(t, p.path)
			if err := n.check(p); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			n.add(t, p)
			if again := ipStrings(p.res); !slices.Equal(again, first) {
				t.Errorf("repeated ADD gave %v, first %v", again, first)
			}
			if err := n.check(p); err != nil {
				t.Errorf("CHECK after the repeated ADD: %v", err)
			}
			n.del(t, p)
			n.del(t, p)
			assertGone(t, n, p)
		})
	}
}

func ipStrings(r *current.Result) []string {
	var out []string
	for _, ip := range r.IPs {
		out = append(out, ip.Address.String())
	}
	return out
}
