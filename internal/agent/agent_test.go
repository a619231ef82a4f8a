package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/bgp"
	"github.com/duetnet/duet/internal/ipam"
)

type fakeSpeaker struct {
	advertised []netip.Prefix
	learned    []bgp.Route
	synced     bool
}

func (f *fakeSpeaker) SetNextHops([]netip.Addr) error   { return nil }
func (f *fakeSpeaker) Advertise(p []netip.Prefix) error { f.advertised = p; return nil }
func (f *fakeSpeaker) Learned() []bgp.Route             { return f.learned }
func (f *fakeSpeaker) Changed() <-chan struct{}         { return nil }
func (f *fakeSpeaker) Peers() []bgp.PeerStatus          { return nil }
func (f *fakeSpeaker) Synced() bool                     { return f.synced }

func (f *fakeSpeaker) SetPeers(context.Context, []bgp.Peer) error { return nil }

// TestPlanBGP: own blocks are advertised and blackholed; learned blocks
// are routed; a router's default route, its connected subnets and our
// own blocks reflected back are not installed.
func TestPlanBGP(t *testing.T) {
	pool6, pool4 := netip.MustParsePrefix("fd00:1::/48"), netip.MustParsePrefix("10.1.0.0/16")
	blocks := []ipam.Block{
		{CIDR: netip.MustParsePrefix("fd00:1::/122"), Pool: pool6, Node: "a"},
		{CIDR: netip.MustParsePrefix("10.1.0.0/26"), Pool: pool4, Node: "a"},
	}
	r := netip.MustParseAddr("fd00:ff::1")
	sp := &fakeSpeaker{learned: []bgp.Route{
		{Dst: netip.MustParsePrefix("fd00:1::40/122"), NextHop: r},
		{Dst: netip.MustParsePrefix("10.1.0.64/26"), NextHop: netip.MustParseAddr("10.255.0.1")},
		{Dst: netip.MustParsePrefix("::/0"), NextHop: r},
		{Dst: netip.MustParsePrefix("10.255.0.0/24"), NextHop: netip.MustParseAddr("10.255.0.1")},
		{Dst: netip.MustParsePrefix("fd00:1::/122"), NextHop: r},
	}}
	routes, err := planBGP(sp, "a", nil, blocks)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.advertised) != 2 {
		t.Errorf("advertised %v", sp.advertised)
	}
	got := map[string]bool{}
	for _, rt := range routes {
		got[rt.String()] = true
	}
	for _, want := range []string{"blackhole fd00:1::/122", "blackhole 10.1.0.0/26", "fd00:1::40/122 via fd00:ff::1 (bgp peer invalid IP)", "10.1.0.64/26 via 10.255.0.1 (bgp peer invalid IP)"} {
		if !got[want] {
			t.Errorf("missing %q in %v", want, got)
		}
	}
	if len(routes) != 4 {
		t.Errorf("want exactly 4 routes, got %v", routes)
	}
}

// TestPeersSynced: a restarted agent keeps its old routes until every
// peer's End-of-RIB (or the deferral timer), then prunes from then on,
// even if a session drops again.
func TestPeersSynced(t *testing.T) {
	sp := &fakeSpeaker{}
	a := New(Config{Node: "a", Routing: BGP}, nil, nil, nil, slog.New(slog.DiscardHandler)).WithSpeaker(sp)
	if a.peersSynced() {
		t.Fatal("synced before any End-of-RIB")
	}
	sp.synced = true
	if !a.peersSynced() {
		t.Fatal("not synced after every End-of-RIB")
	}
	sp.synced = false // a session dropped and came back
	if !a.peersSynced() {
		t.Fatal("synced must stay true once reached")
	}

	late := New(Config{Node: "b", Routing: BGP}, nil, nil, nil, slog.New(slog.DiscardHandler)).WithSpeaker(&fakeSpeaker{})
	late.started = time.Now().Add(-bgpDeferral)
	if !late.peersSynced() {
		t.Fatal("a peer that never sends End-of-RIB must not hold stale routes past the deferral")
	}
}
