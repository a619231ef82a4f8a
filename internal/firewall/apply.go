package firewall

import (
	"context"
	"fmt"
	"strings"

	"sigs.k8s.io/knftables"
)

// newTx returns an empty transaction whose objects name their own family
// and table, so one `nft -f` can touch both of duet's tables.
func newTx() *knftables.Transaction { return knftables.NewFake("", "").NewTransaction() }

// AddPodScript is the nft script that protects pod (and masquerades its
// pools' egress): one atomic transaction.
func AddPodScript(pod Pod, pools []Pool) (string, error) {
	tx := newTx()
	if err := AddPod(tx, pod, pools); err != nil {
		return "", err
	}
	return tx.String(), nil
}

// AddPodElementsScript is the fast-path script of AddPodElements.
func AddPodElementsScript(pod Pod, pools []Pool) (string, error) {
	tx := newTx()
	if err := AddPodElements(tx, pod, pools); err != nil {
		return "", err
	}
	return tx.String(), nil
}

// RemovePodScript is the nft script that removes pod's elements.
func RemovePodScript(pod Pod, pools []Pool) (string, error) {
	tx := newTx()
	if err := RemovePod(tx, pod, pools); err != nil {
		return "", err
	}
	return tx.String(), nil
}

// Lister reads one table; knftables.Interface (real or fake) satisfies it.
type Lister interface {
	ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error)
	ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error)
}

// CheckPod verifies that the table pod lives in still has duet's static
// rules, unmodified, and pod's elements. l must list that table (inet duet
// for routed pods, bridge duet for bridged ones).
func CheckPod(ctx context.Context, l Lister, pod Pod) error {
	fam := pod.family()
	want := bridgeRules
	if fam == knftables.InetFamily {
		want = inetRules
	}
	for _, c := range []struct {
		name string
		want []rule
	}{{chainFromPod, want}, {chainICMPv6, icmpv6Rules}, {chainUDP, udpRules}} {
		rules, err := l.ListRules(ctx, c.name)
		if err != nil {
			return fmt.Errorf("table %s %s: %w (run the pod's ADD again, or restart duetd, to recreate it)", fam, Table, err)
		}
		if err := sameRules(rules, c.want); err != nil {
			return fmt.Errorf("table %s %s chain %s was modified by someone else: %w; duet rewrites it on the next ADD", fam, Table, c.name, err)
		}
	}
	els, err := pod.elements()
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, set := range []string{setMACs, setAddrs6, setAddrs4, setPrefixes6, setPrefixes4} {
		cur, err := l.ListElements(ctx, "set", set)
		if err != nil {
			return fmt.Errorf("table %s %s set %s: %w", fam, Table, set, err)
		}
		for _, e := range cur {
			have[set+" "+strings.Join(e.Key, " . ")] = true
		}
	}
	for _, e := range els {
		if e.Set == setNDTargets {
			continue // raw-payload keys list back in nft's own notation; the address sets cover the pod
		}
		if k := e.Set + " " + strings.Join(e.Key, " . "); !have[k] {
			return fmt.Errorf("table %s %s set %s lacks %s: the pod's traffic is dropped", fam, Table, e.Set, strings.Join(e.Key, " . "))
		}
	}
	return nil
}

// sameRules compares by the comments duet puts on every rule, since nft
// prints rules in its own canonical form.
func sameRules(have []*knftables.Rule, want []rule) error {
	if len(have) != len(want) {
		return fmt.Errorf("it has %d rules, duet wrote %d", len(have), len(want))
	}
	for i, r := range have {
		c := ""
		if r.Comment != nil {
			c = *r.Comment
		}
		if w := want[i].comment; c != w {
			return fmt.Errorf("rule %d is %q, duet wrote %q", i, c, w)
		}
	}
	return nil
}
