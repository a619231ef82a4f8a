package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

// TestClaimsIndex checks that claims go through the claims index, and that
// a store written before the index existed (blocks, no claims) is indexed
// by the first claim, so no block is claimed twice across the upgrade.
func TestClaimsIndex(t *testing.T) {
	s := memstore.New()
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:c1::/120", BlockSize: intp(122)}), mustPool(t, PoolSpec{CIDR: "10.9.0.0/24", BlockSize: intp(26)})}
	// A legacy store: node "old" holds the first block of each pool,
	// written without a claim.
	update(t, s, func(tx store.Tx) error {
		for _, b := range []Block{
			{CIDR: netip.MustParsePrefix("fd00:c1::/122"), Pool: pools[0].CIDR, Node: "old", Allocs: map[netip.Addr]string{}},
			{CIDR: netip.MustParsePrefix("10.9.0.0/26"), Pool: pools[1].CIDR, Node: "old", Allocs: map[netip.Addr]string{}},
		} {
			if err := putBlock(tx, b); err != nil {
				return err
			}
		}
		return nil
	})
	r := req("c1", pools, IPv6, IPv4)
	r.Node = "new"
	var a Allocation
	update(t, s, func(tx store.Tx) (err error) {
		a, err = Allocate(tx, r)
		return err
	})
	if got := a.IPs[0].Block.String(); got != "fd00:c1::40/122" {
		t.Errorf("IPv6 block = %s, want fd00:c1::40/122 (the legacy block is taken)", got)
	}
	if got := a.IPs[1].Block.String(); got != "10.9.0.64/26" {
		t.Errorf("IPv4 block = %s, want 10.9.0.64/26", got)
	}
	var claims []string
	update(t, s, func(tx store.Tx) error {
		kvs, err := tx.List(claimsPrefix)
		for _, kv := range kvs {
			claims = append(claims, strings.TrimPrefix(kv.Key, claimsPrefix)+"="+string(kv.Value))
		}
		return err
	})
	want := "10.9.0.0/26=old 10.9.0.64/26=new fd00:c1::/122=old fd00:c1::40/122=new"
	if got := strings.Join(claims, " "); got != want {
		t.Errorf("claims index = %s, want %s", got, want)
	}
}
