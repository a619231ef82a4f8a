package podnet

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestPlanRejects(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Spec)
	}{
		{"Mode", func(s *Spec) { s.Mode = "overlay" }},
		{"NetNS", func(s *Spec) { s.NetNS = "" }},
		{"IfName", func(s *Spec) { s.IfName = "" }},
		{"IfName", func(s *Spec) { s.IfName = "eth0:1" }},
		{"HostIfName", func(s *Spec) { s.HostIfName = "a-name-longer-than-15" }},
		{"HostIfName", func(s *Spec) { s.HostIfName = "a/b" }},
		{"MAC", func(s *Spec) { s.MAC = net.HardwareAddr{0x01, 0, 0, 0, 0, 1} }},
		{"MAC", func(s *Spec) { s.MAC = net.HardwareAddr{0, 0, 0, 0, 0, 0} }},
		{"MTU", func(s *Spec) { s.MTU = 0 }},
		{"MTU", func(s *Spec) { s.MTU = 1000 }}, // IPv6 needs 1280
		{"Addresses", func(s *Spec) { s.Addresses = nil }},
		{"Addresses[0]", func(s *Spec) { s.Addresses[0] = pfx("fd00:dead::5/64") }},
		{"Addresses[0]", func(s *Spec) { s.Addresses[0] = pfx("fe80::5/128") }},
		{"Addresses[0]", func(s *Spec) { s.Addresses[0] = pfx("::ffff:10.250.0.5/128") }},
		{"Addresses[0]", func(s *Spec) { s.Addresses[0] = netip.Prefix{} }},
		{"Addresses[1]", func(s *Spec) { s.Addresses[1] = pfx("224.0.0.1/32") }},
		{"Addresses[2]", func(s *Spec) { s.Addresses = append(s.Addresses, s.Addresses[0]) }},
		{"BridgeName", func(s *Spec) { s.BridgeName = "duet0" }},
		{"BridgeGateways", func(s *Spec) { s.BridgeGateways = []netip.Prefix{pfx("10.250.1.1/24")} }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			spec := routedSpec("fd00:dead::5/128", "10.250.0.5/32")
			tc.edit(&spec)
			wantField(t, spec, tc.field)
		})
	}
}

func TestPlanRejectsBridge(t *testing.T) {
	for _, tc := range []struct {
		field string
		edit  func(*Spec)
	}{
		{"BridgeName", func(s *Spec) { s.BridgeName = "" }},
		{"BridgeName", func(s *Spec) { s.BridgeName = s.HostIfName }},
		{"BridgeGateways[0]", func(s *Spec) { s.BridgeGateways[0] = pfx("fd00:dead:1::1/128") }},
		{"BridgeGateways[1]", func(s *Spec) { s.BridgeGateways[1] = pfx("127.0.0.1/8") }},
		{"Addresses[0]", func(s *Spec) { s.Addresses[0] = pfx("fd00:beef::5/64") }}, // in no pool
		{"Addresses[1]", func(s *Spec) { s.Addresses[1] = pfx("10.250.1.5/32") }},   // not the pool's length
		{"Addresses[1]", func(s *Spec) { s.Addresses[1] = pfx("10.250.1.1/24") }},   // the gateway
		{"Addresses[1]", func(s *Spec) { s.BridgeGateways = s.BridgeGateways[:1] }}, // no IPv4 gateway
	} {
		t.Run(tc.field, func(t *testing.T) {
			spec := bridgeSpec("fd00:dead:1::5/64", "10.250.1.5/24")
			tc.edit(&spec)
			wantField(t, spec, tc.field)
		})
	}
}

func wantField(t *testing.T, spec Spec, field string) {
	t.Helper()
	_, err := Plan(spec)
	var se *SpecError
	if !errors.As(err, &se) || se.Field != field {
		t.Fatalf("Plan = %v, want *SpecError on %s", err, field)
	}
	t.Log(err)
}

func TestPlanAcceptsIPv4MTUBelowIPv6Minimum(t *testing.T) {
	spec := routedSpec("10.250.0.5/32")
	spec.MTU = 576
	if _, err := Plan(spec); err != nil {
		t.Fatal(err)
	}
}

func TestLinkLocal(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	if got, want := linkLocal(mac), pfx("fe80::5054:ff:fe12:3456/64"); got != want {
		t.Errorf("linkLocal(%s) = %s, want %s", mac, got, want)
	}
}
