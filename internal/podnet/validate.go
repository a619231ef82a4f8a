package podnet

import (
	"fmt"
	"net/netip"
	"strings"
)

// validate checks spec; every error names the field at fault.
func validate(spec Spec) error {
	switch spec.Mode {
	case Routed, Bridge:
	default:
		return specErr("Mode", "unknown mode %q (want %q or %q)", spec.Mode, Routed, Bridge)
	}
	if spec.NetNS == "" && !spec.RuntimeMoves {
		return specErr("NetNS", "empty")
	}
	if err := checkIfName("IfName", spec.IfName); err != nil {
		return err
	}
	if err := checkIfName("HostIfName", spec.HostIfName); err != nil {
		return err
	}
	if len(spec.MAC) != 0 {
		if len(spec.MAC) != 6 || spec.MAC[0]&1 != 0 || strings.Trim(string(spec.MAC), "\x00") == "" {
			return specErr("MAC", "%s is not a unicast Ethernet address", spec.MAC)
		}
	}
	if len(spec.Addresses) == 0 {
		return specErr("Addresses", "empty: the pod needs at least one address")
	}
	has6 := false
	for i, p := range spec.Addresses {
		if err := checkUnicast(fmt.Sprintf("Addresses[%d]", i), p); err != nil {
			return err
		}
		for j := range i {
			if spec.Addresses[j].Addr() == p.Addr() {
				return specErr(fmt.Sprintf("Addresses[%d]", i), "%s repeats Addresses[%d]", p, j)
			}
		}
		has6 = has6 || p.Addr().Is6()
	}
	minMTU := 68
	if has6 {
		minMTU = 1280 // RFC 8200: IPv6 links carry at least 1280 bytes
	}
	if spec.MTU < minMTU || spec.MTU > 65535 {
		return specErr("MTU", "%d out of range [%d, 65535]", spec.MTU, minMTU)
	}
	if spec.Mode == Routed {
		return validateRouted(spec)
	}
	return validateBridge(spec)
}

func validateRouted(spec Spec) error {
	for i, p := range spec.Addresses {
		if p.Bits() != p.Addr().BitLen() {
			return specErr(fmt.Sprintf("Addresses[%d]", i), "%s: routed mode takes /32 and /128 addresses", p)
		}
	}
	if spec.BridgeName != "" {
		return specErr("BridgeName", "set in routed mode")
	}
	if len(spec.BridgeGateways) != 0 {
		return specErr("BridgeGateways", "set in routed mode")
	}
	return nil
}

func validateBridge(spec Spec) error {
	if err := checkIfName("BridgeName", spec.BridgeName); err != nil {
		return err
	}
	if spec.BridgeName == spec.HostIfName {
		return specErr("BridgeName", "%q is also HostIfName", spec.BridgeName)
	}
	for i, g := range spec.BridgeGateways {
		field := fmt.Sprintf("BridgeGateways[%d]", i)
		if err := checkUnicast(field, g); err != nil {
			return err
		}
		if g.Bits() == g.Addr().BitLen() || g.Bits() == 0 {
			return specErr(field, "%s: a gateway needs the pool's prefix length", g)
		}
		for j := range i {
			if spec.BridgeGateways[j].Addr() == g.Addr() {
				return specErr(field, "%s repeats BridgeGateways[%d]", g, j)
			}
		}
	}
	for i, p := range spec.Addresses {
		field := fmt.Sprintf("Addresses[%d]", i)
		var on *netip.Prefix
		for _, g := range spec.BridgeGateways {
			if g.Masked().Contains(p.Addr()) {
				on = &g
				break
			}
		}
		switch {
		case on == nil:
			return specErr(field, "%s is in no BridgeGateways pool, so it would not be on-link", p)
		case on.Bits() != p.Bits():
			return specErr(field, "%s: want the pool's prefix length /%d", p, on.Bits())
		case on.Addr() == p.Addr():
			return specErr(field, "%s is the bridge's gateway address", p)
		}
	}
	return nil
}

// checkUnicast accepts a global or unique-local unicast address with its
// prefix length: what a pod or a gateway can hold.
func checkUnicast(field string, p netip.Prefix) error {
	a := p.Addr()
	switch {
	case !p.IsValid():
		return specErr(field, "invalid prefix")
	case a.Zone() != "":
		return specErr(field, "%s has a zone", p)
	case a.Is4In6():
		return specErr(field, "%s is IPv4-mapped IPv6; write IPv4 addresses as IPv4", p)
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast():
		return specErr(field, "%s is not a routable unicast address", p)
	}
	return nil
}

// checkIfName applies the kernel's rules for interface names
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func checkIfName(field, name string) error {
	switch {
	case name == "":
		return specErr(field, "empty")
	case len(name) > 15:
		return specErr(field, "%q is longer than 15 bytes", name)
	case name == "." || name == "..", strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return specErr(field, "%q is not a valid interface name", name)
	}
	return nil
}
