package firewall

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
)

// AddPodScript is the nft script that protects pod (and masquerades its
// pools' egress): one atomic transaction.
func AddPodScript(pod Pod, pools []Pool) (string, error) {
	t := &tx{}
	if err := addPod(t, pod, pools); err != nil {
		return "", err
	}
	return t.String(), nil
}

// AddPodElementsScript is the fast-path script of addPodElements.
func AddPodElementsScript(pod Pod, pools []Pool) (string, error) {
	t := &tx{}
	if err := addPodElements(t, pod, pools); err != nil {
		return "", err
	}
	return t.String(), nil
}

// RemovePodScript is the nft script that removes pod's elements.
func RemovePodScript(pod Pod, pools []Pool) (string, error) {
	t := &tx{}
	if err := removePod(t, pod, pools); err != nil {
		return "", err
	}
	return t.String(), nil
}

// Reader reads one of duet's tables as the kernel holds it.
type Reader interface {
	// RuleComments are the comments of chain's rules in fam's table, in
	// order.
	RuleComments(fam Family, chain string) ([]string, error)
	// List reads the elements of sets (each named by Family and Set).
	List(sets []RawElement) ([]RawElement, error)
}

// CheckPod verifies that the table pod lives in (inet duet for routed
// pods, bridge duet for bridged ones) still has duet's static rules,
// unmodified, and pod's elements.
func CheckPod(r Reader, pod Pod) error {
	fam := pod.family()
	want := bridgeRules
	if fam == Inet {
		want = inetRules
	}
	for _, c := range []struct {
		name string
		want []rule
	}{{chainFromPod, want}, {chainICMPv6, icmpv6Rules}, {chainUDP, udpRules}} {
		comments, err := r.RuleComments(fam, c.name)
		if err != nil {
			return fmt.Errorf("table %s %s chain %s: %w (run the pod's ADD again, or restart duetd, to recreate it)", fam, Table, c.name, err)
		}
		if err := sameRules(comments, c.want); err != nil {
			return fmt.Errorf("table %s %s chain %s was modified by someone else: %w; duet rewrites it on the next ADD", fam, Table, c.name, err)
		}
	}
	op, err := FastAddPod(pod, nil)
	if err != nil {
		return err
	}
	var sets []RawElement
	for _, s := range podSets {
		sets = append(sets, RawElement{Family: fam, Set: s})
	}
	have, err := r.List(sets)
	if err != nil {
		return fmt.Errorf("table %s %s: %w", fam, Table, err)
	}
	for _, w := range op.Elements {
		found := false
		for _, h := range have {
			if h.Set == w.Set && bytes.Equal(h.Key, w.Key) && (w.KeyEnd == nil || bytes.Equal(h.KeyEnd, w.KeyEnd)) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("table %s %s set %s lacks %s: the pod's traffic is dropped", fam, Table, w.Set, describe(w))
		}
	}
	return nil
}

// sameRules compares by the comments duet puts on every rule, since nft
// prints rules in its own canonical form.
func sameRules(have []string, want []rule) error {
	if len(have) != len(want) {
		return fmt.Errorf("it has %d rules, duet wrote %d", len(have), len(want))
	}
	for i, c := range have {
		if w := want[i].comment; c != w {
			return fmt.Errorf("rule %d is %q, duet wrote %q", i, c, w)
		}
	}
	return nil
}

// describe writes a per-pod element as nft lists it: the interface name,
// then a MAC, an address or a range of addresses.
func describe(e RawElement) string {
	name, _ := keyIfname(e.Key)
	if len(e.Key) <= 16 {
		return name
	}
	rest := e.Key[16:]
	if e.Set == setMACs && len(rest) >= 6 {
		return name + " . " + net.HardwareAddr(rest[:6]).String()
	}
	a, ok := netip.AddrFromSlice(rest)
	if !ok {
		return fmt.Sprintf("%s . %x", name, rest)
	}
	if len(e.KeyEnd) == len(e.Key) {
		if b, ok := netip.AddrFromSlice(e.KeyEnd[16:]); ok && b != a {
			if p, ok := rangePrefix(a, b); ok {
				return name + " . " + p.String()
			}
			return name + " . " + a.String() + "-" + b.String()
		}
	}
	return name + " . " + a.String()
}
