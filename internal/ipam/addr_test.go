package ipam

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

func TestAllocateAddrAndReleaseAddr(t *testing.T) {
	for _, c := range []struct{ pool, want, other string }{
		{"fd00:5::/64", "fd00:5::42", "fd00:5::43"},
		{"10.5.0.0/24", "10.5.0.42", "10.5.0.43"},
	} {
		p, err := PoolSpec{CIDR: c.pool}.Resolve("pools")
		if err != nil {
			t.Fatal(err)
		}
		s := memstore.New()
		upd := func(fn func(tx store.Tx) error) error { return s.Update(context.Background(), fn) }
		req := func(id, node string) Request {
			return Request{Handle: Handle{Network: "docker", ContainerID: id, IfName: "x"}, Node: node, Families: []Family{p.Family()}, Pools: []Pool{p}}
		}
		want := netip.MustParseAddr(c.want)
		var a Allocation
		if err := upd(func(tx store.Tx) (err error) { a, err = AllocateAddr(tx, req("a", "n1"), p, want); return err }); err != nil {
			t.Fatal(err)
		}
		if a.IPs[0].Address.Addr() != want {
			t.Fatalf("got %v, want %s", a.IPs, want)
		}
		// Taken, reserved, another node's block, outside the pool.
		for _, bad := range []struct {
			addr, node, msg string
		}{
			{c.want, "n1", "already in use"},
			{p.Gateway().String(), "n1", "reserved"},
			{c.other, "n2", "node \"n1\" holds"},
			{"fd00:6::1", "n1", "not in pool"},
		} {
			addr := netip.MustParseAddr(bad.addr)
			if addr.Is4() != want.Is4() {
				addr = netip.MustParseAddr(map[bool]string{true: "10.6.0.1", false: "fd00:6::1"}[want.Is4()])
			}
			err := upd(func(tx store.Tx) error { _, err := AllocateAddr(tx, req("b", bad.node), p, addr); return err })
			if err == nil || !strings.Contains(err.Error(), bad.msg) {
				t.Errorf("%s on %s: %v, want %q", addr, bad.node, err, bad.msg)
			}
		}
		// A sequential allocation on n1 never hands out the chosen one.
		var seq Allocation
		if err := upd(func(tx store.Tx) (err error) { seq, err = Allocate(tx, req("c", "n1")); return err }); err != nil {
			t.Fatal(err)
		}
		if seq.IPs[0].Address.Addr() == want {
			t.Fatal("a sequential allocation got the chosen address")
		}
		for _, addr := range []netip.Addr{want, seq.IPs[0].Address.Addr(), want} { // the last: again, no error
			if err := upd(func(tx store.Tx) error { _, _, err := ReleaseAddr(tx, p, addr); return err }); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := upd(func(tx store.Tx) (err error) { n, err = ReleaseEmptyBlocks(tx, "n1", p.CIDR); return err }); err != nil {
			t.Fatal(err)
		}
		_ = s.View(context.Background(), func(tx store.Tx) error {
			for _, prefix := range []string{handlesPrefix, blocksPrefix, claimsPrefix} {
				if kvs, _ := tx.List(prefix); len(kvs) > 0 {
					t.Errorf("%s: left %s after releasing everything (%d blocks dropped)", c.pool, kvs[0].Key, n)
				}
			}
			return nil
		})
	}
}
