package bgp_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/bgp"
)

// blocks returns n consecutive blocks of 64 addresses (/122 or /26) from
// first, the sizes duet's pools use by default.
func blocks(first string, n int) []netip.Prefix {
	p := netip.MustParsePrefix(first)
	var out []netip.Prefix
	for i := range n {
		if p.Addr().Is4() {
			b := p.Addr().As4()
			binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(64*i))
			out = append(out, netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()))
		} else {
			b := p.Addr().As16()
			binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+uint32(64*i))
			out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), p.Bits()))
		}
	}
	return out
}

// nextHopOf is the next hop a block is advertised with: the address of
// the block's own family on the advertising side.
func nextHopOf(p netip.Prefix, v6, v4 netip.Addr) netip.Addr {
	if p.Addr().Is4() {
		return v4
	}
	return v6
}

func want(ps []netip.Prefix, v6, v4 netip.Addr) map[netip.Prefix]netip.Addr {
	m := map[netip.Prefix]netip.Addr{}
	for _, p := range ps {
		m[p] = nextHopOf(p, v6, v4)
	}
	return m
}

func learnedMap(s *bgp.Speaker) map[netip.Prefix]netip.Addr {
	m := map[netip.Prefix]netip.Addr{}
	for _, r := range s.Learned() {
		m[r.Dst] = r.NextHop
	}
	return m
}

func peer(s *bgp.Speaker, a netip.Addr) bgp.PeerStatus {
	for _, p := range s.Peers() {
		if p.Addr == a {
			return p
		}
	}
	return bgp.PeerStatus{}
}

// channelUp matches a BIRD channel that is up in `show protocols all`.
var channelUp = regexp.MustCompile(`(?m)^\s+State:\s+UP$`)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func speakerConfig(gr bool) bgp.Config {
	return bgp.Config{
		ASN:      65001,
		RouterID: a4,
		Peers: []bgp.Peer{
			{Addr: b6, ASN: 65002, HoldTime: 9 * time.Second, Name: "bird"},
			{Addr: b4, ASN: 65099, Name: "bird-wrong-asn"}, // BIRD is 65002
			{Addr: silent6, ASN: 65003, Name: "silent"},
			{Addr: b4md5, ASN: 65002, Password: md5Password, Name: "bird-md5"},
		},
		GracefulRestart: gr,
		RestartTime:     30 * time.Second,
	}
}

func startSpeaker(t *testing.T, cfg bgp.Config, advertise []netip.Prefix) *bgp.Speaker {
	t.Helper()
	s := bgp.New(cfg, testLogger(t))
	if err := s.SetNextHops([]netip.Addr{a6, a4}); err != nil {
		t.Fatal(err)
	}
	if err := s.Advertise(advertise); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func TestSpeakerWithBIRD(t *testing.T) {
	l, child := inLab(t, "-test.run=^TestSpeakerWithBIRD$")
	if !child {
		return
	}
	birdStatic := append(blocks("fd00:245::/122", 10), blocks("10.245.0.0/26", 10)...)
	b := startBIRD(t, l, birdConf(l.Dir, birdStatic))
	ours := append(blocks("fd00:10::/122", 4), blocks("10.244.0.0/26", 4)...)
	s := startSpeaker(t, speakerConfig(true), ours)

	waitFor(t, 30*time.Second, "established with BIRD in both families", func() (bool, string) {
		p := peer(s, b6)
		return p.State == "established" && slices.Equal(p.Families, []string{"ipv6-unicast", "ipv4-unicast"}), fmt.Sprintf("%+v", p)
	})
	proto := b.protocol(t, "a6")
	if !strings.Contains(proto, "Established") || len(channelUp.FindAllString(proto, -1)) != 2 {
		t.Errorf("BIRD's a6 should be Established with channels ipv6 and ipv4 up:\n%s", proto)
	}

	t.Run("BIRD learns our blocks, next hop of each block's family", func(t *testing.T) {
		waitFor(t, 20*time.Second, "BIRD has A's blocks", func() (bool, string) {
			got := b.routes(t, "a6")
			return maps.Equal(got, want(ours, a6, a4)), fmt.Sprint(got)
		})
	})

	t.Run("we learn BIRD's static routes", func(t *testing.T) {
		select {
		case <-s.Changed():
		case <-time.After(20 * time.Second):
			t.Fatal("Changed() never signalled")
		}
		waitFor(t, 20*time.Second, "Learned() has BIRD's routes", func() (bool, string) {
			got := learnedMap(s)
			return maps.Equal(got, want(birdStatic, b6, b4)), fmt.Sprint(got)
		})
		for _, r := range s.Learned() {
			if r.Peer != b6 {
				t.Errorf("%s: Peer = %s, want %s", r, r.Peer, b6)
			}
		}
		p := peer(s, b6)
		if p.Accepted != uint64(len(birdStatic)) || p.Advertised != uint64(len(ours)) || p.LastError != "" {
			t.Errorf("status %+v: want %d accepted, %d advertised, no error", p, len(birdStatic), len(ours))
		}
	})

	t.Run("End-of-RIB per peer", func(t *testing.T) {
		waitFor(t, 20*time.Second, "BIRD's End-of-RIB in both families", func() (bool, string) {
			p := peer(s, b6)
			return p.EndOfRIB, fmt.Sprintf("%+v", p)
		})
		// The silent peer and the wrong ASN never give a table: the
		// speaker as a whole is not synced, whatever BIRD sent.
		if s.Synced() {
			t.Errorf("Synced with peers that never came up: %+v", s.Peers())
		}
		for _, a := range []netip.Addr{b4, silent6} {
			if p := peer(s, a); p.EndOfRIB {
				t.Errorf("%s never established but has EndOfRIB: %+v", a, p)
			}
		}
	})

	t.Run("a smaller set withdraws the rest", func(t *testing.T) {
		fewer := []netip.Prefix{ours[1], ours[5]} // one of each family
		if err := s.Advertise(fewer); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "BIRD down to the smaller set", func() (bool, string) {
			got := b.routes(t, "a6")
			return maps.Equal(got, want(fewer, a6, a4)), fmt.Sprint(got)
		})
		ours = fewer
	})

	t.Run("TCP MD5 password", func(t *testing.T) {
		waitFor(t, 30*time.Second, "established with a password", func() (bool, string) {
			p := peer(s, b4md5)
			return p.State == "established", fmt.Sprintf("%+v\n%s", p, b.protocol(t, "pw"))
		})
	})

	t.Run("wrong ASN and silent peer", func(t *testing.T) {
		waitFor(t, 30*time.Second, "the wrong ASN reported", func() (bool, string) {
			p := peer(s, b4)
			return p.State != "established" && strings.Contains(p.LastError, "bad peer as"), fmt.Sprintf("%+v", p)
		})
		waitFor(t, 30*time.Second, "the silent peer reported", func() (bool, string) {
			p := peer(s, silent6)
			return (p.State == "active" || p.State == "connect") && strings.Contains(p.LastError, "connect"), fmt.Sprintf("%+v", p)
		})
		for _, p := range s.Peers() {
			t.Logf("%-15s %-13s %-11s last error: %s", p.Name, p.Addr, p.State, p.LastError)
		}
		if got := b.routes(t, "a4"); len(got) != 0 {
			t.Errorf("nothing may be installed from the wrong-ASN session: %v", got)
		}
	})

	t.Run("graceful restart keeps our routes at BIRD", func(t *testing.T) {
		s.Stop()
		if s.Learned() != nil || s.Peers() != nil {
			t.Error("a stopped speaker reports nothing")
		}
		// BIRD notices the closed connection at once; without graceful
		// restart it would drop A's routes at once too.
		waitFor(t, 10*time.Second, "BIRD's session down", func() (bool, string) {
			p := b.protocol(t, "a6")
			return !strings.Contains(p, "Established"), p
		})
		for range 3 {
			if got := b.routes(t, "a6"); !maps.Equal(got, want(ours, a6, a4)) {
				t.Fatalf("BIRD dropped A's routes while A restarts: %v\n%s", got, b.protocol(t, "a6"))
			}
			time.Sleep(time.Second)
		}
		t.Logf("BIRD during the restart:\n%s", b.protocol(t, "a6"))
		s = startSpeaker(t, speakerConfig(true), ours)
		waitFor(t, 30*time.Second, "established again, with BIRD's End-of-RIB", func() (bool, string) {
			p := peer(s, b6)
			return p.State == "established" && p.EndOfRIB, fmt.Sprintf("%+v", p)
		})
		// BIRD ends its helper mode when A's End-of-RIB arrives.
		waitFor(t, 20*time.Second, "BIRD's routes refreshed", func() (bool, string) {
			got, p := b.routes(t, "a6"), b.protocol(t, "a6")
			return maps.Equal(got, want(ours, a6, a4)) && !strings.Contains(p, "graceful restart active"), fmt.Sprint(got, "\n", p)
		})
		t.Logf("BIRD after the restart:\n%s", b.protocol(t, "a6"))
	})

	t.Run("without graceful restart Stop withdraws", func(t *testing.T) {
		s.Stop()
		s = startSpeaker(t, speakerConfig(false), ours)
		waitFor(t, 30*time.Second, "BIRD has A's blocks", func() (bool, string) {
			got := b.routes(t, "a6")
			return peer(s, b6).State == "established" && maps.Equal(got, want(ours, a6, a4)), fmt.Sprint(got)
		})
		s.Stop()
		waitFor(t, 5*time.Second, "BIRD withdrew A's blocks", func() (bool, string) {
			got := b.routes(t, "a6")
			return len(got) == 0, fmt.Sprint(got)
		})
	})
}
