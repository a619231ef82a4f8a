package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// EnableForwarding turns on routing in the host namespace for the family
// of each of addrs (netip.IPv6Unspecified() and netip.IPv4Unspecified()
// name both) and returns every sysctl it changed, so the caller can log
// them (and a test can put them back with RestoreSysctls).
//
// Turning IPv6 forwarding on makes the kernel ignore router advertisements
// on interfaces with accept_ra=1, and a host that learned its default route
// from one would lose it when it expires. So before that, every interface
// at accept_ra=1 is moved to 2 ("accept even when forwarding"). Interfaces
// at 0 are left alone, as are "all", "default" and lo.
// Equivalent to: sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
func EnableForwarding(addrs ...netip.Addr) ([]SysctlChange, error) {
	var v4, v6 bool
	for _, a := range addrs {
		if !a.IsValid() {
			return nil, errors.New("enable forwarding: the zero netip.Addr has no family")
		}
		v4, v6 = v4 || a.Is4(), v6 || !a.Is4()
	}
	host, err := HostNS()
	if err != nil {
		return nil, err
	}
	defer host.Close()
	var want []Sysctl
	if v6 {
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
	}
	if v4 {
		want = append(want, Sysctl{Name: "net.ipv4.ip_forward", Value: "1"})
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
