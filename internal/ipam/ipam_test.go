package ipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

func mustPool(t *testing.T, s PoolSpec) Pool {
	t.Helper()
	p, err := s.Resolve("pools[0]")
	if err != nil {
		t.Fatalf("Resolve(%+v): %v", s, err)
	}
	return p
}

func intp(i int) *int { return &i }

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func TestResolveDefaults(t *testing.T) {
	for _, tc := range []struct {
		cidr      string
		assign    Assign
		wantBlock int
		wantNAT   bool
	}{
		{"fd12:3456:789a::/48", "", 122, true},
		{"2001:db8::/48", "", 122, false},
		{"2001:db8::/64", MAC, 80, false},
		{"2001:db8::/80", MAC, 80, false},
		{"fd00::/120", "", 122, true},
		{"10.20.0.0/16", "", 26, true},
		{"100.64.0.0/16", "", 26, true},
		{"192.0.2.0/24", "", 26, false},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			if tc.cidr == "fd00::/120" {
				// A pool smaller than the default block shrinks the block to the pool.
				tc.wantBlock = 122
			}
			p, err := PoolSpec{CIDR: tc.cidr, Assign: tc.assign}.Resolve("pools[0]")
			if err != nil {
				t.Fatal(err)
			}
			if p.BlockSize != max(tc.wantBlock, p.CIDR.Bits()) || p.NATOutgoing != tc.wantNAT {
				t.Errorf("got block /%d nat %v, want /%d %v", p.BlockSize, p.NATOutgoing, tc.wantBlock, tc.wantNAT)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		spec      PoolSpec
		wantField string
		wantText  string
	}{
		{PoolSpec{CIDR: "fd00::/96", Assign: MAC}, "pools[0].cidr", "/80 or larger"},
		{PoolSpec{CIDR: "fd00::/64", Assign: MAC, BlockSize: intp(96)}, "pools[0].blockSize", "80 or less"},
		{PoolSpec{CIDR: "10.0.0.0/16", Assign: MAC}, "pools[0].assign", "IPv6"},
		{PoolSpec{CIDR: "fd00::/124", BlockSize: intp(122)}, "pools[0].cidr", "smaller than its block size"},
		{PoolSpec{CIDR: "10.0.0.0/28", BlockSize: intp(26)}, "pools[0].cidr", "smaller than its block size"},
		{PoolSpec{CIDR: "fd00::1/64"}, "pools[0].cidr", "use fd00::/64"},
		{PoolSpec{CIDR: "banana"}, "pools[0].cidr", "not a prefix"},
		{PoolSpec{CIDR: "fd00::/48", BlockSize: intp(127)}, "pools[0].blockSize", "fewer than 4"},
		{PoolSpec{CIDR: "fd00::/48", BlockSize: intp(56)}, "pools[0].blockSize", "64 or more"},
		{PoolSpec{CIDR: "fd00::/48", Assign: "random"}, "pools[0].assign", "sequential"},
		{PoolSpec{CIDR: "::/0"}, "pools[0].cidr", "whole address family"},
	} {
		t.Run(tc.spec.CIDR+string(tc.spec.Assign), func(t *testing.T) {
			_, err := tc.spec.Resolve("pools[0]")
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.wantField || !strings.Contains(ce.Msg, tc.wantText) {
				t.Fatalf("got %v, want field %s and %q", err, tc.wantField, tc.wantText)
			}
		})
	}
}

func TestValidatePoolsOverlap(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00::/48"}), mustPool(t, PoolSpec{CIDR: "10.1.0.0/16"}), mustPool(t, PoolSpec{CIDR: "fd00:0:0:1::/64"})}
	err := ValidatePools(pools, "pools")
	if err == nil || !strings.Contains(err.Error(), "pools[2].cidr") || !strings.Contains(err.Error(), "pools[0]") {
		t.Fatalf("got %v", err)
	}
	if err := ValidatePools(pools[:2], "pools"); err != nil {
		t.Fatal(err)
	}
}

func req(id string, pools []Pool, fams ...Family) Request {
	return Request{Handle: Handle{"net", id, "eth0"}, Node: "node-a", Families: fams, Pools: pools, Rand: rand.New(rand.NewSource(1))}
}

func TestAllocateDualIdempotentAndRelease(t *testing.T) {
	s := memstore.New()
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:1::/48"}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	var first Allocation
	update(t, s, func(tx store.Tx) (err error) {
		first, err = Allocate(tx, req("c1", pools, IPv6, IPv4))
		return err
	})
	if len(first.IPs) != 2 || !first.IPs[0].Address.Addr().Is6() || !first.IPs[1].Address.Addr().Is4() {
		t.Fatalf("want IPv6 then IPv4, got %+v", first.IPs)
	}
	// The network and gateway addresses are reserved.
	if got := first.IPs[0].Address.String(); got != "fd00:1::2/48" {
		t.Errorf("first IPv6 = %s, want fd00:1::2/48", got)
	}
	if got := first.IPs[1].Address.String(); got != "10.7.0.2/16" {
		t.Errorf("first IPv4 = %s, want 10.7.0.2/16", got)
	}
	if first.IPs[0].Gateway.String() != "fd00:1::1" || first.IPs[1].Gateway.String() != "10.7.0.1" {
		t.Errorf("gateways %v %v", first.IPs[0].Gateway, first.IPs[1].Gateway)
	}
	update(t, s, func(tx store.Tx) error {
		again, err := Allocate(tx, req("c1", pools, IPv6, IPv4))
		if fmt.Sprint(again.IPs) != fmt.Sprint(first.IPs) {
			t.Errorf("second ADD gave %v, want %v", again.IPs, first.IPs)
		}
		return err
	})
	update(t, s, func(tx store.Tx) error {
		if _, ok, err := Release(tx, first.Handle); !ok || err != nil {
			t.Errorf("Release: %v %v", ok, err)
		}
		if _, ok, err := Release(tx, first.Handle); ok || err != nil {
			t.Errorf("second Release: %v %v", ok, err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		blocks, _ := Blocks(tx)
		for _, b := range blocks {
			if len(b.Allocs) != 0 {
				t.Errorf("block %s still holds %v", b.CIDR, b.Allocs)
			}
		}
		// Round-robin: a freed address is not handed out again at once.
		a, err := Allocate(tx, req("c2", pools, IPv6, IPv4))
		if a.IPs[0].Address.Addr() == first.IPs[0].Address.Addr() {
			t.Errorf("freed address reused at once: %v", a.IPs[0])
		}
		return err
	})
}

func TestAllocateFamilies(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:1::/48"}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	for _, fams := range [][]Family{{IPv6}, {IPv4}, {IPv6, IPv4}} {
		s := memstore.New()
		update(t, s, func(tx store.Tx) error {
			a, err := Allocate(tx, req("c", pools, fams...))
			if err != nil {
				return err
			}
			if len(a.IPs) != len(fams) {
				t.Errorf("%v: got %v", fams, a.IPs)
			}
			for i, f := range fams {
				if FamilyOf(a.IPs[i].Address.Addr()) != f {
					t.Errorf("%v: ip %d is %v", fams, i, a.IPs[i])
				}
			}
			return nil
		})
	}
	s := memstore.New()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		_, err := Allocate(tx, req("c", pools[:1], IPv6, IPv4))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "no IPv4 pool") {
		t.Fatalf("want missing-pool error, got %v", err)
	}
}

func TestExhaustionAndBlocks(t *testing.T) {
	// A /120 pool of /122 blocks: 4 blocks of 64, minus the two reserved.
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:9::/120"}), mustPool(t, PoolSpec{CIDR: "10.9.9.0/24"})}
	s := memstore.New()
	seen := map[netip.Addr]bool{}
	for i := 0; i < 254; i++ {
		update(t, s, func(tx store.Tx) error {
			r := req(fmt.Sprint("c", i), pools, IPv6)
			if r.Node = "node-a"; i >= 126 { // node-a's two blocks hold 62+64
				r.Node = "node-b"
			}
			a, err := Allocate(tx, r)
			if err != nil {
				return err
			}
			addr := a.IPs[0].Address.Addr()
			if seen[addr] || !a.IPs[0].Block.Contains(addr) {
				t.Fatalf("duplicate or out-of-block %v", addr)
			}
			seen[addr] = true
			return nil
		})
	}
	err := s.Update(context.Background(), func(tx store.Tx) error {
		_, err := Allocate(tx, req("one-too-many", pools, IPv6))
		return err
	})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "fd00:9::/120") {
		t.Fatalf("want exhausted naming the pool, got %v", err)
	}
	_ = s.View(context.Background(), func(tx store.Tx) error {
		if err := Room(tx, "node-a", []Family{IPv6}, pools); !errors.Is(err, ErrExhausted) {
			t.Errorf("Room on a full pool: %v", err)
		}
		if err := Room(tx, "node-a", []Family{IPv4}, pools); err != nil {
			t.Errorf("Room on an empty pool: %v", err)
		}
		blocks, _ := Blocks(tx)
		nodes := map[string]int{}
		for _, b := range blocks {
			nodes[b.Node]++
		}
		if len(blocks) != 4 || nodes["node-a"] != 2 || nodes["node-b"] != 2 {
			t.Errorf("blocks per node: %v", nodes)
		}
		return nil
	})
}

func TestIPv4BroadcastReserved(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "10.9.9.0/30", BlockSize: intp(30)})}
	s := memstore.New()
	update(t, s, func(tx store.Tx) error {
		a, err := Allocate(tx, req("c", pools, IPv4))
		if err != nil || a.IPs[0].Address.Addr().String() != "10.9.9.2" {
			t.Errorf("got %v %v", a, err)
		}
		_, err = Allocate(tx, req("d", pools, IPv4))
		if !errors.Is(err, ErrExhausted) {
			t.Errorf("10.9.9.3 is the broadcast address, want exhausted, got %v", err)
		}
		return nil
	})
}

func TestBlockSizeChangeNeverOverlaps(t *testing.T) {
	s := memstore.New()
	small := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:5::/64", BlockSize: intp(122)})}
	big := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:5::/64", BlockSize: intp(120)})}
	update(t, s, func(tx store.Tx) error { _, err := Allocate(tx, req("a", small, IPv6)); return err })
	update(t, s, func(tx store.Tx) error {
		r := req("b", big, IPv6)
		r.Node = "node-b" // node-a would reuse its own /122; node-b must claim around it
		a, err := Allocate(tx, r)
		if err == nil && a.IPs[0].Block.Overlaps(netip.MustParsePrefix("fd00:5::/122")) {
			t.Errorf("new /120 block %v overlaps the existing /122", a.IPs[0].Block)
		}
		return err
	})
}

func TestMACAssign(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "2001:db8:1::/64", Assign: MAC}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	s := memstore.New()
	update(t, s, func(tx store.Tx) error {
		a, err := Allocate(tx, req("c", pools, IPv6, IPv4))
		if err != nil {
			return err
		}
		if a.MAC == "" || a.IPs[0].Block.Bits() != 80 {
			t.Fatalf("got %+v", a)
		}
		// The address's last 48 bits are the MAC.
		b := a.IPs[0].Address.Addr().As16()
		if got := fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[10], b[11], b[12], b[13], b[14], b[15]); got != a.MAC {
			t.Errorf("address %v does not end in MAC %s", a.IPs[0].Address, a.MAC)
		}
		if b[10]&0x02 == 0 || b[10]&0x01 != 0 {
			t.Errorf("MAC %s is not locally administered unicast", a.MAC)
		}
		return nil
	})
}

func TestGC(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:1::/48"}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	s := memstore.New()
	for _, id := range []string{"keep", "leak1", "leak2"} {
		update(t, s, func(tx store.Tx) error { _, err := Allocate(tx, req(id, pools, IPv6, IPv4)); return err })
	}
	update(t, s, func(tx store.Tx) error {
		other := req("other-net", pools, IPv6)
		other.Handle.Network = "other"
		_, err := Allocate(tx, other)
		return err
	})
	update(t, s, func(tx store.Tx) error {
		freed, err := GC(tx, "net", func(a Allocation) bool { return a.ContainerID == "keep" })
		if len(freed) != 2 {
			t.Errorf("freed %v", freed)
		}
		left, _ := List(tx, "")
		if len(left) != 2 {
			t.Errorf("left %v", left)
		}
		return err
	})
}

func TestDefaultPools(t *testing.T) {
	s := memstore.New()
	r := rand.New(rand.NewSource(7))
	taken := func() ([]netip.Prefix, error) {
		var out []netip.Prefix
		for i := 0; i < 256; i++ {
			if i != 200 {
				out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 1, 0}), 24))
			}
		}
		return append(out, netip.MustParsePrefix("0.0.0.0/0")), nil
	}
	var first []Pool
	update(t, s, func(tx store.Tx) (err error) { first, err = DefaultPools(tx, r, taken); return err })
	if len(first) != 2 || !first[0].CIDR.Addr().Is6() || first[0].CIDR.Bits() != 48 || first[0].CIDR.Addr().As16()[0] != 0xfd {
		t.Fatalf("want a ULA /48 first, got %v", first)
	}
	if first[1].CIDR.String() != "10.200.0.0/16" {
		t.Errorf("want the only free /16, got %v", first[1].CIDR)
	}
	if !first[0].NATOutgoing || !first[1].NATOutgoing {
		t.Errorf("zero-config pools are private and must be masqueraded: %+v", first)
	}
	update(t, s, func(tx store.Tx) error {
		again, err := DefaultPools(tx, r, taken)
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Errorf("pools changed: %v then %v", first, again)
		}
		return err
	})
	all := func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil }
	if _, err := FreeTen16(r, mustPrefixes(all)); err == nil || !strings.Contains(err.Error(), "pools") {
		t.Errorf("want an error telling to configure pools, got %v", err)
	}
}

func mustPrefixes(f func() ([]netip.Prefix, error)) []netip.Prefix { p, _ := f(); return p }

func TestULAIsRandom(t *testing.T) {
	a, _ := NewULA48(rand.New(rand.NewSource(1)))
	b, _ := NewULA48(rand.New(rand.NewSource(2)))
	if a == b || !ULA.Contains(a.Addr()) {
		t.Errorf("got %v and %v", a, b)
	}
}

// recordingTx notes the prefixes listed, to check what an allocation reads.
type recordingTx struct {
	store.Tx
	lists []string
}

func (r *recordingTx) List(prefix string) ([]store.KV, error) {
	r.lists = append(r.lists, prefix)
	return r.Tx.List(prefix)
}

// TestAllocationReadsOnlyItsNode: once a node holds a block with room, an
// allocation lists only that node's blocks, so on etcd allocations on
// different nodes never conflict.
func TestAllocationReadsOnlyItsNode(t *testing.T) {
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:1::/48"}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	s := memstore.New()
	update(t, s, func(tx store.Tx) error { _, err := Allocate(tx, req("first", pools, IPv6, IPv4)); return err })
	update(t, s, func(tx store.Tx) error {
		rec := &recordingTx{Tx: tx}
		if _, err := Allocate(rec, req("second", pools, IPv6, IPv4)); err != nil {
			return err
		}
		for _, l := range rec.lists {
			if l != "blocks/node-a/" {
				t.Errorf("allocation listed %q; want only its node's blocks", l)
			}
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error {
		r := req("bad", pools, IPv6)
		r.Node = "a/b"
		_, err := Allocate(tx, r)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "nodeName") {
		t.Fatalf("a node name with '/': %v", err)
	}
}

// TestAllocateDecodesItsFamilyOnly: an allocation decodes only the node's
// blocks of the family it allocates (the family is in the key), so a
// corrupt IPv4 block stops IPv4 allocations, with the key named, and
// IPv6 ones go on from their own block.
func TestAllocateDecodesItsFamilyOnly(t *testing.T) {
	s := memstore.New()
	pools := []Pool{mustPool(t, PoolSpec{CIDR: "fd00:1::/48"}), mustPool(t, PoolSpec{CIDR: "10.7.0.0/16"})}
	var first Allocation
	update(t, s, func(tx store.Tx) (err error) {
		first, err = Allocate(tx, req("c1", pools, IPv6, IPv4))
		return err
	})
	v4Key := blockKey("node-a", first.IPs[1].Block)
	update(t, s, func(tx store.Tx) error { return tx.Put(v4Key, []byte("{not json")) })
	update(t, s, func(tx store.Tx) error {
		a, err := Allocate(tx, req("c2", pools, IPv6))
		if err != nil {
			t.Fatalf("IPv6 allocation read the IPv4 block: %v", err)
		}
		if a.IPs[0].Block != first.IPs[0].Block || a.IPs[0].Address == first.IPs[0].Address {
			t.Errorf("IPv6 allocation %v, want another address of block %s", a.IPs[0], first.IPs[0].Block)
		}
		return nil
	})
	err := s.Update(context.Background(), func(tx store.Tx) error {
		_, err := Allocate(tx, req("c3", pools, IPv6, IPv4))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), v4Key) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("IPv4 allocation from a corrupt block = %v, want the key named", err)
	}
}
