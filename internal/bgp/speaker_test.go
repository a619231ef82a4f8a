package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
)

// These tests run GoBGP in-process with no listener and no peers, so they
// need no root and open no sockets: they check what Advertise and
// SetNextHops put in GoBGP's RIB, in the shape GoBGP will send.

// ribEntry is one of the node's own paths as GoBGP stores it: which
// attribute carries the next hop is the family detail this package hides.
type ribEntry struct {
	Dst, NextHop string
	MPReach      bool // MP_REACH_NLRI (RFC 4760) rather than NEXT_HOP
}

func localRIB(t *testing.T, s *Speaker) []ribEntry {
	t.Helper()
	var out []ribEntry
	for _, f := range families {
		err := s.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			for _, p := range d.Paths {
				e := ribEntry{Dst: d.Prefix}
				for _, a := range p.Pattrs {
					var nh api.NextHopAttribute
					var mp api.MpReachNLRIAttribute
					switch {
					case a.UnmarshalTo(&nh) == nil:
						e.NextHop = nh.NextHop
					case a.UnmarshalTo(&mp) == nil:
						e.NextHop, e.MPReach = strings.Join(mp.NextHops, ","), true
					}
				}
				out = append(out, e)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(out, func(a, b ribEntry) int { return strings.Compare(a.Dst, b.Dst) })
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func startLocal(t *testing.T) *Speaker {
	t.Helper()
	s := New(Config{ASN: 65001, RouterID: netip.MustParseAddr("10.246.0.1"), ListenPort: -1}, nil)
	if err := s.SetNextHops([]netip.Addr{netip.MustParseAddr("fd00:b6b::1"), netip.MustParseAddr("10.246.0.1")}); err != nil {
		t.Fatal(err)
	}
	// Set before Start: Start must advertise it.
	if err := s.Advertise(prefixes("fd00:10::/122", "fd00:10::40/122", "10.244.0.0/26", "10.244.0.64/26")); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func TestAdvertiseBothFamilies(t *testing.T) {
	s := startLocal(t)
	want := []ribEntry{
		{"10.244.0.0/26", "10.246.0.1", false},
		{"10.244.0.64/26", "10.246.0.1", false},
		{"fd00:10::/122", "fd00:b6b::1", true},
		{"fd00:10::40/122", "fd00:b6b::1", true},
	}
	if got := localRIB(t, s); !slices.Equal(got, want) {
		t.Fatalf("RIB after Start:\n got %v\nwant %v", got, want)
	}
	if got := s.Learned(); len(got) != 0 {
		t.Errorf("Learned() = %v; the node's own blocks must not be in it", got)
	}

	// Declarative: a smaller set withdraws the rest; the same set again
	// changes nothing.
	for range 2 {
		if err := s.Advertise(prefixes("fd00:10::40/122", "10.244.0.0/26")); err != nil {
			t.Fatal(err)
		}
		want = []ribEntry{{"10.244.0.0/26", "10.246.0.1", false}, {"fd00:10::40/122", "fd00:b6b::1", true}}
		if got := localRIB(t, s); !slices.Equal(got, want) {
			t.Fatalf("RIB after a smaller set:\n got %v\nwant %v", got, want)
		}
	}

	// A new next hop moves the paths already advertised.
	if err := s.SetNextHops([]netip.Addr{netip.MustParseAddr("fd00:b6b::11"), netip.MustParseAddr("10.246.0.11")}); err != nil {
		t.Fatal(err)
	}
	want = []ribEntry{{"10.244.0.0/26", "10.246.0.11", false}, {"fd00:10::40/122", "fd00:b6b::11", true}}
	if got := localRIB(t, s); !slices.Equal(got, want) {
		t.Fatalf("RIB after SetNextHops:\n got %v\nwant %v", got, want)
	}
}

func TestAdvertiseRejectsBadPrefixes(t *testing.T) {
	s := startLocal(t)
	err := s.Advertise([]netip.Prefix{netip.MustParsePrefix("fd00:10::/122"), {}, netip.MustParsePrefix("::ffff:10.0.0.0/120")})
	if err == nil || !strings.Contains(err.Error(), "not a plain IPv4 or IPv6 prefix") {
		t.Fatalf("Advertise() error = %v, want one naming the bad prefixes", err)
	}
	if got := localRIB(t, s); !slices.Equal(got, []ribEntry{{"fd00:10::/122", "fd00:b6b::1", true}}) {
		t.Fatalf("the valid prefix must still apply: RIB %v", got)
	}
}

func TestSetNextHopsErrors(t *testing.T) {
	s := New(Config{}, nil)
	for _, tt := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"fd00:b6b::1", "fd00:b6b::2"}, "are of one family"},
		{[]string{"10.246.0.1", "10.246.0.2"}, "are of one family"},
		{[]string{"fe80::1"}, "not a routable unicast address"},
		{[]string{"0.0.0.0"}, "not a routable unicast address"},
	} {
		var addrs []netip.Addr
		for _, a := range tt.addrs {
			addrs = append(addrs, netip.MustParseAddr(a))
		}
		if err := s.SetNextHops(addrs); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("SetNextHops(%v) = %v, want %q", tt.addrs, err, tt.want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	s := New(Config{ASN: 0, RouterID: netip.MustParseAddr("10.246.0.1"), ListenPort: -1}, nil)
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "asn: 0 is not an AS number") {
		t.Fatalf("Start with a bad config = %v", err)
	}
	if s.Peers() != nil || s.Learned() != nil {
		t.Fatal("a failed Start must leave nothing running")
	}
	s = startLocal(t)
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	// Stop and Start again, as duetd does on a config change.
	s.Stop()
	s.Stop()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	if got := localRIB(t, s); len(got) != 4 {
		t.Fatalf("restart must re-advertise the desired set, RIB %v", got)
	}
}
