package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		ASN:      65001,
		RouterID: netip.MustParseAddr("10.246.0.1"),
		Peers: []Peer{
			{Addr: netip.MustParseAddr("fd00:b6b::2"), ASN: 65002, Name: "tor-v6"},
			{Addr: netip.MustParseAddr("10.246.0.2"), ASN: 65002, Name: "tor-v4", HoldTime: 9 * time.Second, Multihop: 2},
			{Addr: netip.MustParseAddr("fd00:b6b::3"), ASN: 65001, Name: "mesh"},
		},
		GracefulRestart: true,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none means valid
	}{
		{"valid", func(*Config) {}, nil},
		{"listen off", func(c *Config) { c.ListenPort = -1 }, nil},
		{"no peers", func(c *Config) { c.Peers = nil }, nil},
		{"ipv6 peer asn 0", func(c *Config) { c.Peers[0].ASN = 0 }, []string{"peers[0].asn: 0 is not an AS number"}},
		{"ipv4 peer asn 0", func(c *Config) { c.Peers[1].ASN = 0 }, []string{"peers[1].asn: 0 is not an AS number"}},
		{"as_trans", func(c *Config) { c.ASN = 23456 }, []string{"asn: 23456 is AS_TRANS"}},
		{"reserved asn", func(c *Config) { c.Peers[2].ASN = 65535 }, []string{"peers[2].asn: 65535 is reserved"}},
		{"no router id", func(c *Config) { c.RouterID = netip.Addr{} }, []string{"routerID: missing"}},
		{"ipv6 router id", func(c *Config) { c.RouterID = netip.MustParseAddr("fd00::1") }, []string{"routerID: fd00::1 is not an IPv4 address"}},
		{"zero router id", func(c *Config) { c.RouterID = netip.IPv4Unspecified() }, []string{"routerID: 0.0.0.0"}},
		{"port", func(c *Config) { c.ListenPort = 70000 }, []string{"listenPort: 70000 is not a port"}},
		{"restart time", func(c *Config) { c.RestartTime = 2 * time.Hour }, []string{"restartTime: 2h0m0s is outside"}},
		{"missing addr", func(c *Config) { c.Peers[0].Addr = netip.Addr{} }, []string{"peers[0].addr: missing"}},
		{"ipv6 multicast", func(c *Config) { c.Peers[0].Addr = netip.MustParseAddr("ff02::1") }, []string{"peers[0].addr: ff02::1 is not a unicast address"}},
		{"ipv6 link-local", func(c *Config) { c.Peers[0].Addr = netip.MustParseAddr("fe80::1") }, []string{"peers[0].addr: fe80::1: link-local"}},
		{"ipv4 unspecified", func(c *Config) { c.Peers[1].Addr = netip.IPv4Unspecified() }, []string{"peers[1].addr: 0.0.0.0 is not a unicast address"}},
		{"duplicate ipv6", func(c *Config) { c.Peers[2].Addr = c.Peers[0].Addr }, []string{"peers[2].addr: fd00:b6b::2 is already peers[0]"}},
		{"duplicate ipv4 mapped", func(c *Config) { c.Peers[2].Addr = netip.MustParseAddr("::ffff:10.246.0.2") }, []string{"peers[2].addr: 10.246.0.2 is already peers[1]"}},
		{"hold time", func(c *Config) { c.Peers[0].HoldTime = time.Second }, []string{"peers[0].holdTime: 1s is outside 3s..65535s"}},
		{"password", func(c *Config) { c.Peers[1].Password = strings.Repeat("x", 81) }, []string{"peers[1].password: 81 bytes"}},
		{"multihop ttl", func(c *Config) { c.Peers[1].Multihop = 256 }, []string{"peers[1].multihop: TTL 256"}},
		{"multihop ibgp", func(c *Config) { c.Peers[2].Multihop = 2 }, []string{"peers[2].multihop: only applies to eBGP"}},
		{"several at once", func(c *Config) { c.ASN = 0; c.Peers[1].ASN = 0 }, []string{"asn: 0 is not an AS number", "peers[1].asn: 0 is not an AS number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	for _, tt := range []struct {
		d, def time.Duration
		want   uint64
	}{
		{0, DefaultHoldTime, 90},
		{9 * time.Second, DefaultHoldTime, 9},
		{1500 * time.Millisecond, DefaultHoldTime, 2}, // rounded up, never to 0
	} {
		if got := seconds(tt.d, tt.def); got != tt.want {
			t.Errorf("seconds(%s, %s) = %d, want %d", tt.d, tt.def, got, tt.want)
		}
	}
}
