// Helpers that read duet's datastore, with the bolt backend and the ipam
// package or with duetctl, and check that an attachment left nothing
// behind.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/bolt"
)

// storeView is everything IPAM keeps: allocations and blocks.
type storeView struct {
	Pools       map[string][]ipam.Pool `json:"pools"`
	Blocks      []ipam.Block           `json:"blocks"`
	Allocations []ipam.Allocation      `json:"allocations"`
}

// readStore opens the bolt file read-only (waiting for any plugin that
// holds it); a file not created yet is an empty store.
func readStore(t *testing.T, path string) storeView {
	t.Helper()
	var v storeView
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return v
	}
	s, err := bolt.Open(path, bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	defer s.Close()
	err = s.View(context.Background(), func(tx store.Tx) (err error) {
		if v.Allocations, err = ipam.List(tx, ""); err != nil {
			return err
		}
		v.Blocks, err = ipam.Blocks(tx)
		return err
	})
	if err != nil {
		t.Fatalf("read store: %v", err)
	}
	return v
}

// duetctlShow is `duetctl ipam show --json --datastore-path path`.
func duetctlShow(t *testing.T, path string) storeView {
	t.Helper()
	return duetctlShowArgs(t, "--datastore-path", path)
}

// duetctlShowArgs is `duetctl ipam show --json` with other store flags.
func duetctlShowArgs(t *testing.T, args ...string) storeView {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "duetctl"), append([]string{"ipam", "show", "--json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("duetctl ipam show: %v: %s", err, out)
	}
	var v storeView
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("duetctl ipam show --json: %v: %s", err, out)
	}
	return v
}

// holders maps every address of the store to the handles holding it, from
// the allocations and from the blocks, and fails the test if any address
// is held twice or the two views disagree.
func holders(t *testing.T, v storeView) map[netip.Addr]string {
	t.Helper()
	byAlloc := map[netip.Addr]string{}
	for _, a := range v.Allocations {
		key := "handles/" + a.Network + "/" + a.ContainerID + "/" + a.IfName
		for _, ip := range a.IPs {
			addr := ip.Address.Addr()
			if other, dup := byAlloc[addr]; dup {
				t.Errorf("address %s is allocated twice: to %s and %s", addr, other, key)
			}
			byAlloc[addr] = key
		}
	}
	byBlock := map[netip.Addr]string{}
	for _, b := range v.Blocks {
		for addr, key := range b.Allocs {
			if other, dup := byBlock[addr]; dup {
				t.Errorf("address %s is in two blocks: for %s and %s", addr, other, key)
			}
			if !b.CIDR.Contains(addr) {
				t.Errorf("block %s holds %s, outside it", b.CIDR, addr)
			}
			byBlock[addr] = key
		}
	}
	for addr, key := range byAlloc {
		if byBlock[addr] != key {
			t.Errorf("allocation %s holds %s, but its block says %q", key, addr, byBlock[addr])
		}
	}
	for addr, key := range byBlock {
		if _, ok := byAlloc[addr]; !ok {
			t.Errorf("block entry %s -> %s has no allocation: leaked", addr, key)
		}
	}
	return byAlloc
}

// allocation returns the store's allocation for h.
func (v storeView) allocation(h ipam.Handle) (ipam.Allocation, bool) {
	for _, a := range v.Allocations {
		if a.Handle == h {
			return a, true
		}
	}
	return ipam.Allocation{}, false
}

// assertGone checks that nothing of p's attachment to n is left: no host
// veth, no pod interface, no allocation, no nftables element, no host
// route to its addresses.
func assertGone(t *testing.T, n *network, p *pod) {
	t.Helper()
	if _, err := os.Stat(p.path); err == nil && linkExists(t, p.path, p.ifName) {
		t.Errorf("pod %s still has %s", p.id, p.ifName)
	}
	assertHostClean(t, n, p)
}

// assertHostClean checks the host side of assertGone: no host veth,
// allocation, nftables element or route is left of p's attachment.
func assertHostClean(t *testing.T, n *network, p *pod) {
	t.Helper()
	if hostIf := p.hostIf(n); linkExists(t, "", hostIf) {
		t.Errorf("host veth %s of %s is still there", hostIf, p.id)
	} else if nftMentions(t, hostIf) {
		t.Errorf("duet's nftables tables still mention %s", hostIf)
	}
	if a, ok := readStore(t, n.store).allocation(p.handle(n)); ok {
		t.Errorf("store still holds %+v", a)
	}
	for _, v6 := range []bool{true, false} {
		if addr, ok := p.addr(v6); ok {
			for r := range testRoutes(t) {
				if contains(r, addr.String()+"/") {
					t.Errorf("host route %s to %s is still there", r, p.id)
				}
			}
		}
	}
}
