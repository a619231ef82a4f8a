package ipam

import (
	"fmt"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

// TestReleaseNode: a removed node's allocations, blocks and claims go, in
// bounded steps, another node's stay, and the freed blocks are claimed
// again.
func TestReleaseNode(t *testing.T) {
	s := memstore.New()
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:de::/120", BlockSize: intp(122)}), mustPool(t, PoolSpec{CIDR: "10.8.0.0/24", BlockSize: intp(26)})}
	alloc := func(id, node string) Allocation {
		r := req(id, pools, IPv6, IPv4)
		r.Node = node
		var a Allocation
		update(t, s, func(tx store.Tx) (err error) {
			a, err = Allocate(tx, r)
			return err
		})
		return a
	}
	for i := range 5 {
		alloc(fmt.Sprintf("gone%d", i), "gone")
	}
	kept := alloc("kept", "live")
	steps := 0
	for {
		var n int
		update(t, s, func(tx store.Tx) (err error) {
			n, err = ReleaseNode(tx, "gone", 3)
			return err
		})
		if n == 0 {
			break
		}
		if n > 3 {
			t.Fatalf("a step released %d keys, limit 3", n)
		}
		if steps++; steps > 10 {
			t.Fatal("ReleaseNode does not finish")
		}
	}
	update(t, s, func(tx store.Tx) error {
		allocs, err := List(tx, "")
		if err != nil {
			return err
		}
		if len(allocs) != 1 || allocs[0].Handle != kept.Handle {
			t.Errorf("allocations left: %+v, want only the live node's", allocs)
		}
		blocks, err := Blocks(tx)
		for _, b := range blocks {
			if b.Node == "gone" {
				t.Errorf("block %s of the removed node left", b.CIDR)
			}
		}
		claims, _ := tx.List(claimsPrefix)
		if len(claims) != 2 {
			t.Errorf("claims left: %v, want the live node's two", claims)
		}
		return err
	})
	// The first blocks of each pool were the removed node's: claimable again.
	again := alloc("new", "newcomer")
	if got := again.IPs[0].Block.String(); got != "fd00:de::/122" {
		t.Errorf("newcomer's IPv6 block = %s, want the freed fd00:de::/122", got)
	}
	if got := again.IPs[1].Block.String(); got != "10.8.0.0/26" {
		t.Errorf("newcomer's IPv4 block = %s, want the freed 10.8.0.0/26", got)
	}
}
