package policy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestFlatten(t *testing.T) {
	d := &Direction{Rules: []Rule{
		{Peers: prefixes("2001:db8::/32")}, // everything
		{Peers: prefixes("2001:db8::5/128", "fd00::/8"), Ports: []PortRange{{TCP, 80, 90}}},
		{Peers: prefixes("fd00:1::/64"), Ports: []PortRange{{UDP, 53, 53}, {TCP, 85, 100}}},
		{AnyPeer: true, Ports: []PortRange{{TCP, 443, 443}}},
	}}
	f := d.Flatten()
	want := Flat{
		All: prefixes("2001:db8::/32"),
		ByPort: []PortPeers{
			{PortRange{TCP, 80, 84}, prefixes("fd00::/8")}, // 2001:db8::5 is in All already
			{PortRange{TCP, 85, 90}, prefixes("fd00::/8")}, // fd00:1::/64 is inside fd00::/8
			{PortRange{TCP, 91, 100}, prefixes("fd00:1::/64")},
			{PortRange{TCP, 443, 443}, prefixes("::/0", "0.0.0.0/0")},
			{PortRange{UDP, 53, 53}, prefixes("fd00:1::/64")},
		},
	}
	// 80-84 and 85-90 have the same peers but stay apart, so that a
	// change elsewhere adds elements rather than replacing them.
	if !slices.Equal(f.All, want.All) || !slices.EqualFunc(f.ByPort, want.ByPort, func(a, b PortPeers) bool {
		return a.Ports == b.Ports && slices.Equal(a.Peers, b.Peers)
	}) {
		t.Errorf("Flatten =\n%+v\nwant\n%+v", f, want)
	}
}

// TestFlattenMatchesAllows: for random directions, Flatten answers every
// probe as Allows does, and its elements never overlap.
func TestFlattenMatchesAllows(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	randPorts := func() []PortRange {
		var ps []PortRange
		for i := r.IntN(3); i > 0; i-- {
			proto := []Proto{TCP, UDP, SCTP}[r.IntN(3)]
			from := uint16(r.IntN(20))
			ps = append(ps, PortRange{proto, from, from + uint16(r.IntN(5))})
		}
		return MergePorts(ps)
	}
	for i := 0; i < 300; i++ {
		d := &Direction{}
		for j := 1 + r.IntN(4); j > 0; j-- {
			rule := Rule{Ports: randPorts(), AnyPeer: r.IntN(8) == 0}
			for k := r.IntN(4); k > 0; k-- {
				rule.Peers = append(rule.Peers, randPrefix(r))
			}
			rule.Peers = Union(rule.Peers)
			d.Rules = append(d.Rules, rule)
		}
		f := d.Flatten()
		for a, x := range f.ByPort {
			if !slices.Equal(Union(x.Peers), x.Peers) {
				t.Fatalf("peers of %s not a union: %v", x.Ports, x.Peers)
			}
			for _, y := range f.ByPort[a+1:] {
				if x.Ports.Proto == y.Ports.Proto && x.Ports.To >= y.Ports.From && y.Ports.To >= x.Ports.From {
					t.Fatalf("port ranges overlap: %v %v", x.Ports, y.Ports)
				}
			}
		}
		var all []netip.Prefix
		for _, rule := range d.Rules {
			all = append(all, rule.Peers...)
		}
		for k := 0; k < 100; k++ {
			var a netip.Addr
			if len(all) > 0 && r.IntN(4) > 0 {
				a = randAddrIn(r, all[r.IntN(len(all))])
			} else {
				a = randAddrIn(r, randPrefix(r))
			}
			proto := []Proto{TCP, UDP, SCTP, ICMPv6}[r.IntN(4)]
			port := uint16(r.IntN(26))
			want, _ := d.Allows(a, proto, port)
			if got := f.Allows(a, proto, port); got != want {
				t.Fatalf("%s %s/%d: Flatten %v, Allows %v\nrules %+v\nflat %+v", a, proto, port, got, want, d.Rules, f)
			}
		}
	}
}

func TestMergePorts(t *testing.T) {
	got := MergePorts([]PortRange{{UDP, 53, 53}, {TCP, 80, 90}, {TCP, 91, 95}, {TCP, 85, 86}, {TCP, 443, 443}, {UDP, 0, 65535}})
	want := []PortRange{{TCP, 80, 95}, {TCP, 443, 443}, {UDP, 0, 65535}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
