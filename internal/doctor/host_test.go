package doctor

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hostWants: each host facts fixture and what the doctor says about it.
var hostWants = map[string][]string{
	"good": {},
	// Seed 001's host gone wrong: RA default route with accept_ra=1 and
	// forwarding on, a /125 from the on-link /64 without proxy_ndp, a ULA
	// docker0 without masquerade (kube-proxy's marked SNAT does not count),
	// no IPv4 forwarding or default route, new interfaces without IPv6,
	// MTUs that do not fit.
	"bad":            {"HOST001@0", "HOST002@0", "HOST003@0", "HOST004@0", "HOST005@0", "HOST007@0", "HOST009@0", "HOST010@0"},
	"bad-proxy":      {"HOST006@0"},
	"bad-nofirewall": {"HOST008@0"},
	"bad-disabled":   {"HOST001@0"},
	// A running engine: the default bridge without IPv6, an IPv6 network
	// with no IPv6 subnet (Docker before 27), a duet network whose duetd
	// --docker is not running.
	"bad-engine": {"DOCKERH001@0", "DOCKERH002@0", "DOCKERH003@0"},
}

func loadFacts(t *testing.T, name string) *HostFacts {
	t.Helper()
	b, err := os.ReadFile("testdata/host/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var h HostFacts
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return &h
}

func TestHostFacts(t *testing.T) {
	for name, want := range hostWants {
		t.Run(name, func(t *testing.T) {
			got := CheckHost(loadFacts(t, name))
			if diff := cmp.Diff(sorted(want...), codes(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			for _, f := range got {
				if f.Layer != LayerHost || f.Object == "" || f.Why == "" || f.Fix == "" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
		})
	}
}

// TestHostFactsRoundTrip: facts survive JSON, so a host's facts can be
// saved and checked elsewhere.
func TestHostFactsRoundTrip(t *testing.T) {
	h := loadFacts(t, "bad")
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back HostFacts
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(codes(CheckHost(h)), codes(CheckHost(&back))); diff != "" {
		t.Error(diff)
	}
}

func TestMasqueradeRules(t *testing.T) {
	for _, tc := range []struct {
		name, nft, ipt, ip6t string
		prefix               string
		want                 bool
	}{
		{name: "nft prefix", nft: "table ip6 nat {\n chain post {\n  ip6 saddr fd00::/64 oifname \"eth0\" masquerade\n }\n}", prefix: "fd00::/80", want: true},
		{name: "nft other prefix", nft: "table ip6 nat {\n chain post {\n  ip6 saddr fd01::/64 masquerade\n }\n}", prefix: "fd00::/80", want: false},
		{name: "nft anonymous set", nft: "table inet nat {\n chain post {\n  ip6 saddr { fd01::/64, fd00::/48 } masquerade\n }\n}", prefix: "fd00::/80", want: true},
		{name: "nft named set", nft: "table inet duet {\n set nat6 {\n  type ipv6_addr\n  flags interval\n  elements = { fd01::/64,\n   fd00::/48 }\n }\n chain post {\n  ip6 saddr @nat6 ip6 daddr != @nat6 masquerade\n }\n}", prefix: "fd00::/80", want: true},
		{name: "nft ip table is IPv4", nft: "table ip nat {\n chain post {\n  oifname \"eth0\" masquerade\n }\n}", prefix: "fd00::/80", want: false},
		{name: "nft inet without saddr", nft: "table inet nat {\n chain post {\n  oifname \"eth0\" masquerade\n }\n}", prefix: "fd00::/80", want: true},
		{name: "nft marked only", nft: "table ip6 nat {\n chain post {\n  meta mark & 0x4000 == 0x4000 masquerade\n }\n}", prefix: "fd00::/80", want: false},
		{name: "nft kube-proxy table", nft: "table ip6 kube-proxy {\n chain masquerading {\n  masquerade fully-random\n }\n}", prefix: "fd00::/80", want: false},
		{name: "nft negated", nft: "table ip nat {\n chain post {\n  ip saddr != 10.0.0.0/8 masquerade\n }\n}", prefix: "172.17.0.0/16", want: true},
		{name: "docker iptables", ipt: "*nat\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n", prefix: "172.17.0.0/16", want: true},
		{name: "seed 000 ip6tables", ip6t: "*nat\n-A POSTROUTING -s fd00::/80 ! -o docker0 -j MASQUERADE\n", prefix: "fd00::/80", want: true},
		{name: "ip6tables for IPv4", ip6t: "*nat\n-A POSTROUTING -s fd00::/80 -j MASQUERADE\n", prefix: "10.0.0.0/8", want: false},
		{name: "calico ipset", ip6t: "-A cali-nat-outgoing -m set --match-set cali60masq-ipam-pools src -m set ! --match-set cali60all-ipam-pools dst -j MASQUERADE\n", prefix: "fd00:1::/48", want: true},
		{name: "kube-proxy chain", ip6t: "-A KUBE-POSTROUTING -j MASQUERADE --random-fully\n", prefix: "fd00:1::/48", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &HostFacts{Ruleset: tc.nft, IPTables: tc.ipt, IP6Tables: tc.ip6t}
			p := mustPrefix(tc.prefix)
			if got := covered(masqRules(h), p); got != tc.want {
				t.Errorf("covered(%s) = %v, want %v; rules %+v", p, got, tc.want, masqRules(h))
			}
		})
	}
}

// TestGatherParsesIproute2: the gatherer reads iproute2's JSON and /proc/sys
// (faked here; the privileged test runs the real thing).
func TestGatherParsesIproute2(t *testing.T) {
	out := map[string]string{
		"ip -j -d link show":                     `[{"ifname":"lo","mtu":65536,"flags":["LOOPBACK","UP"]},{"ifname":"eth0","mtu":1500,"flags":["UP"]},{"ifname":"docker0","mtu":1500,"flags":["UP"],"linkinfo":{"info_kind":"bridge"}}]`,
		"ip -j addr show":                        `[{"ifname":"eth0","addr_info":[{"family":"inet6","local":"2001:db8::c001","prefixlen":64}]}]`,
		"ip -j -6 route show table main":         `[{"dst":"default","gateway":"fe80::1","dev":"eth0","protocol":"ra"},{"dst":"2001:db8::c009","dev":"docker0","protocol":"static"},{"type":"blackhole","dst":"fd00:1::/122","dev":"lo"}]`,
		"ip -j -4 route show table main":         `[]`,
		"ip -j -6 neigh show proxy":              `[{"dst":"2001:db8::c009","dev":"eth0","proxy":null}]`,
		"nft list ruleset":                       "",
		"iptables-save -t nat":                   "",
		"ip6tables-save -t nat":                  "",
		"/proc/sys/net/ipv4/ip_forward":          "1\n",
		"/proc/sys/net/ipv6/conf/eth0/accept_ra": "1\n",
	}
	g := Gatherer{
		Run: func(name string, args ...string) ([]byte, error) {
			k := strings.Join(append([]string{name}, args...), " ")
			if v, ok := out[k]; ok {
				return []byte(v), nil
			}
			return nil, fmt.Errorf("unexpected command %q", k)
		},
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := out[p]; ok {
				return []byte(v), nil
			}
			if p == "/proc/sys/net/ipv6/conf/all/disable_ipv6" || p == "/proc/sys/net/ipv6/conf/all/forwarding" {
				return []byte("0\n"), nil
			}
			return nil, os.ErrNotExist
		},
	}
	h, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := &HostFacts{
		Sysctls: map[string]string{"net/ipv4/ip_forward": "1", "net/ipv6/conf/eth0/accept_ra": "1", "net/ipv6/conf/all/disable_ipv6": "0", "net/ipv6/conf/all/forwarding": "0"},
		Links:   []Link{{Name: "lo", MTU: 65536, Up: true}, {Name: "eth0", MTU: 1500, Up: true}, {Name: "docker0", Kind: "bridge", MTU: 1500, Up: true}},
		Addrs:   []Addr{{Dev: "eth0", Prefix: mustPrefix("2001:db8::c001/64")}},
		Routes: []Route{
			{Dst: mustPrefix("::/0"), Dev: "eth0", GW: mustAddr("fe80::1"), Protocol: "ra"},
			{Dst: mustPrefix("2001:db8::c009/128"), Dev: "docker0", Protocol: "static"},
			{Dst: mustPrefix("fd00:1::/122"), Dev: "lo", Type: "blackhole"},
		},
		ProxyNeighs: []ProxyNeigh{{Addr: mustAddr("2001:db8::c009"), Dev: "eth0"}},
	}
	if diff := cmp.Diff(want, h, cmpNetip); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
