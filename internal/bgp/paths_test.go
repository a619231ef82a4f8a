package bgp

import (
	"net/netip"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPathFor checks the paths this node advertises decode, with GoBGP's
// own decoder, to the prefix and next hop given, in both families.
func TestPathFor(t *testing.T) {
	tests := []struct {
		dst, nh  string
		family   *api.Family
		wantNH   string
		wantErr  string
		wantNLRI string
	}{
		{dst: "fd00:10::/122", nh: "fd00:b6b::1", family: familyIPv6, wantNH: "fd00:b6b::1", wantNLRI: "fd00:10::/122"},
		{dst: "fd00:10::5/122", nh: "fd00:b6b::1", family: familyIPv6, wantNH: "fd00:b6b::1", wantNLRI: "fd00:10::/122"}, // masked
		{dst: "fd00:10::/122", nh: "", family: familyIPv6, wantNH: "::", wantNLRI: "fd00:10::/122"},                      // session's address
		{dst: "10.244.0.64/26", nh: "10.246.0.1", family: familyIPv4, wantNH: "10.246.0.1", wantNLRI: "10.244.0.64/26"},
		{dst: "10.244.0.64/26", nh: "", family: familyIPv4, wantNH: "0.0.0.0", wantNLRI: "10.244.0.64/26"},
		{dst: "fd00:10::/122", nh: "10.246.0.1", wantErr: "other family"},
		{dst: "10.244.0.64/26", nh: "fd00:b6b::1", wantErr: "other family"},
	}
	for _, tt := range tests {
		var nh netip.Addr
		if tt.nh != "" {
			nh = netip.MustParseAddr(tt.nh)
		}
		p, err := pathFor(netip.MustParsePrefix(tt.dst), nh)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("pathFor(%s, %s) error = %v, want %q", tt.dst, tt.nh, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("pathFor(%s, %s): %v", tt.dst, tt.nh, err)
		}
		if !proto.Equal(p.Family, tt.family) {
			t.Errorf("pathFor(%s): family %v, want %v", tt.dst, p.Family, tt.family)
		}
		nlri, err := apiutil.GetNativeNlri(p)
		if err != nil {
			t.Fatal(err)
		}
		if nlri.String() != tt.wantNLRI {
			t.Errorf("pathFor(%s): NLRI %s, want %s", tt.dst, nlri, tt.wantNLRI)
		}
		attrs, err := apiutil.GetNativePathAttributes(p)
		if err != nil {
			t.Fatal(err)
		}
		var gotNH string
		for _, a := range attrs {
			if a, ok := a.(*bgp.PathAttributeNextHop); ok {
				gotNH = a.Value.String()
			}
		}
		if gotNH != tt.wantNH {
			t.Errorf("pathFor(%s, %s): next hop %q, want %q", tt.dst, tt.nh, gotNH, tt.wantNH)
		}
	}
}

// TestRouteOf reads paths in the shapes GoBGP reports them for peers'
// routes: IPv6 in MP_REACH_NLRI (with a link-local second next hop, RFC
// 2545), IPv4 with NEXT_HOP, and IPv4 with an IPv6 next hop (RFC 8950).
func TestRouteOf(t *testing.T) {
	prefix := func(s string) *anypb.Any {
		p := netip.MustParsePrefix(s)
		return mustAny(t, &api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	}
	origin := mustAny(t, &api.OriginAttribute{})
	mpReach := func(f *api.Family, dst string, nhs ...string) *anypb.Any {
		return mustAny(t, &api.MpReachNLRIAttribute{Family: f, NextHops: nhs, Nlris: []*anypb.Any{prefix(dst)}})
	}
	tests := []struct {
		name    string
		path    *api.Path
		want    Route
		ok      bool
		wantErr string
	}{
		{
			name: "ipv6 global and link-local next hops",
			path: &api.Path{NeighborIp: "fd00:b6b::2", Family: familyIPv6, Nlri: prefix("fd00:245::/122"),
				Pattrs: []*anypb.Any{origin, mpReach(familyIPv6, "fd00:245::/122", "fd00:b6b::2", "fe80::2")}},
			want: Route{Dst: netip.MustParsePrefix("fd00:245::/122"), NextHop: netip.MustParseAddr("fd00:b6b::2"), Peer: netip.MustParseAddr("fd00:b6b::2")},
			ok:   true,
		},
		{
			name: "ipv4 over an ipv6 session",
			path: &api.Path{NeighborIp: "fd00:b6b::2", Family: familyIPv4, Nlri: prefix("10.245.0.0/26"),
				Pattrs: []*anypb.Any{origin, mustAny(t, &api.NextHopAttribute{NextHop: "10.246.0.2"})}},
			want: Route{Dst: netip.MustParsePrefix("10.245.0.0/26"), NextHop: netip.MustParseAddr("10.246.0.2"), Peer: netip.MustParseAddr("fd00:b6b::2")},
			ok:   true,
		},
		{
			name: "ipv4 with ipv6 next hop",
			path: &api.Path{NeighborIp: "10.246.0.2", Family: familyIPv4, Nlri: prefix("10.245.0.64/26"),
				Pattrs: []*anypb.Any{mpReach(familyIPv4, "10.245.0.64/26", "fd00:b6b::2")}},
			want: Route{Dst: netip.MustParsePrefix("10.245.0.64/26"), NextHop: netip.MustParseAddr("fd00:b6b::2"), Peer: netip.MustParseAddr("10.246.0.2")},
			ok:   true,
		},
		{
			name: "our own path",
			path: &api.Path{NeighborIp: "<nil>", Family: familyIPv6, Nlri: prefix("fd00:10::/122"),
				Pattrs: []*anypb.Any{mustAny(t, &api.NextHopAttribute{NextHop: "fd00:b6b::1"})}},
		},
		{
			name:    "no next hop",
			path:    &api.Path{NeighborIp: "fd00:b6b::2", Family: familyIPv6, Nlri: prefix("fd00:245::/122"), Pattrs: []*anypb.Any{origin}},
			wantErr: "no next hop",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := routeOf(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("routeOf() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.ok || got != tt.want {
				t.Fatalf("routeOf() = %v, %v, %v; want %v, %v, nil", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func TestSortRoutesIPv6First(t *testing.T) {
	rs := []Route{
		{Dst: netip.MustParsePrefix("10.245.0.64/26")},
		{Dst: netip.MustParsePrefix("fd00:245::40/122")},
		{Dst: netip.MustParsePrefix("10.245.0.0/26")},
		{Dst: netip.MustParsePrefix("fd00:245::/122")},
	}
	sortRoutes(rs)
	var got []string
	for _, r := range rs {
		got = append(got, r.Dst.String())
	}
	want := "fd00:245::/122 fd00:245::40/122 10.245.0.0/26 10.245.0.64/26"
	if strings.Join(got, " ") != want {
		t.Errorf("sortRoutes = %v, want %s", got, want)
	}
}
