package kernel

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// Family is an address family, for the few host settings that exist once
// per family.
type Family int

// The two families, numbered as people say them.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "IPv4" or "IPv6".
func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// FamilyOf returns a's family.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// FamiliesOf returns the distinct families of prefixes, IPv6 first.
func FamiliesOf(prefixes []netip.Prefix) []Family {
	var out []Family
	for _, f := range []Family{IPv6, IPv4} {
		if slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return FamilyOf(p.Addr()) == f }) {
			out = append(out, f)
		}
	}
	return out
}

// EnableForwarding turns on routing in the host namespace for each family
// and returns every sysctl it changed, so the caller can log them (and a
// test can put them back with RestoreSysctls).
//
// Turning IPv6 forwarding on makes the kernel ignore router advertisements
// on interfaces with accept_ra=1, and a host that learned its default route
// from one would lose it when it expires. So before that, every interface
// at accept_ra=1 is moved to 2 ("accept even when forwarding"). Interfaces
// at 0 are left alone, as are "all", "default" and lo.
// Equivalent to: sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
func EnableForwarding(families ...Family) ([]SysctlChange, error) {
	host, err := HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	var want []Sysctl
	for _, f := range families {
		switch f {
		case IPv4:
			want = append(want, Sysctl{Name: "net.ipv4.ip_forward", Value: "1"})
		case IPv6:
			on, err := host.Sysctl("net.ipv6.conf.all.forwarding")
			if err != nil {
				return nil, err
			}
			if on != "1" {
				ra, err := acceptRAOnes()
				if err != nil {
					return nil, err
				}
				want = append(want, ra...)
			}
			want = append(want, Sysctl{Name: "net.ipv6.conf.all.forwarding", Value: "1"})
		default:
			return nil, fmt.Errorf("enable forwarding: unknown family %d", int(f))
		}
	}
	return host.SetSysctls(want)
}

// acceptRAOnes lists accept_ra=2 for each interface now at accept_ra=1.
func acceptRAOnes() ([]Sysctl, error) {
	ents, err := os.ReadDir("/proc/sys/net/ipv6/conf")
	if err != nil {
		return nil, fmt.Errorf("list IPv6 interfaces: %w", err)
	}
	var out []Sysctl
	for _, e := range ents {
		switch e.Name() {
		case "all", "default", "lo":
			continue
		}
		name := IPv6Conf(e.Name(), "accept_ra")
		v, err := readSysctl(name)
		if err != nil {
			continue // the interface went away meanwhile
		}
		if v == "1" {
			// OnlyIf: a pod's host end hardened to 0 since the read stays 0.
			out = append(out, Sysctl{Name: name, Value: "2", Optional: true, OnlyIf: "1"})
		}
	}
	return out, nil
}

// RestoreSysctls undoes changes made in the host namespace, last first.
// Keys that no longer exist (an interface gone since) are skipped.
func RestoreSysctls(changes []SysctlChange) error {
	host, err := HostNS()
	if err != nil {
		return err
	}
	defer host.Close()
	want := make([]Sysctl, 0, len(changes))
	for _, c := range slices.Backward(changes) {
		want = append(want, Sysctl{Name: c.Name, Value: c.Old, Optional: true})
	}
	_, err = host.SetSysctls(want)
	return err
}
