package firewall

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"sigs.k8s.io/knftables"
)

// knft is t as a knftables transaction on fake: the tests run duet's
// scripts on knftables' fake (which validates each object and keeps the
// state), and check that both render the same text.
func knft(fake *knftables.Fake, t *tx) *knftables.Transaction {
	out := fake.NewTransaction()
	for _, o := range t.ops {
		var obj knftables.Object
		fam := knftables.Family(o.obj.fam)
		switch o.obj.kind {
		case "table":
			obj = &knftables.Table{Family: fam, Name: Table}
		case "chain":
			c := &knftables.Chain{Family: fam, Table: Table, Name: o.obj.name}
			if o.obj.hook != "" {
				c.Type = knftables.PtrTo(knftables.BaseChainType(o.obj.chainType))
				c.Hook = knftables.PtrTo(knftables.BaseChainHook(o.obj.hook))
				c.Priority = knftables.PtrTo(knftables.BaseChainPriority(strconv.Itoa(o.obj.priority)))
			}
			obj = c
		case "set":
			s := &knftables.Set{Family: fam, Table: Table, Name: o.obj.name, Type: o.obj.setType, TypeOf: o.obj.typeOf}
			if o.obj.interval {
				s.Flags = []knftables.SetFlag{knftables.IntervalFlag}
			}
			obj = s
		case "rule":
			obj = &knftables.Rule{Family: fam, Table: Table, Chain: o.obj.name, Rule: o.obj.rule.expr, Comment: knftables.PtrTo(o.obj.rule.comment)}
		case "element":
			obj = &knftables.Element{Family: fam, Table: Table, Set: o.obj.name, Key: o.obj.key}
		default:
			panic("unknown kind " + o.obj.kind)
		}
		switch o.verb {
		case verbAdd:
			out.Add(obj)
		case verbFlush:
			out.Flush(obj)
		case verbDelete:
			out.Delete(obj)
		}
	}
	return out
}

// run runs what fill renders on fake, failing t if knftables refuses it.
func run(t *testing.T, fake *knftables.Fake, fill func(*tx) error) {
	t.Helper()
	script := &tx{}
	if err := fill(script); err != nil {
		t.Fatal(err)
	}
	k := knft(fake, script)
	if err := fake.Run(context.Background(), k); err != nil {
		t.Fatalf("%v\n%s", err, k)
	}
}

// TestScriptIsKnftables: every script duet renders is, byte for byte,
// what knftables renders for the same objects (the form duetd's nft
// accepts), in both tables and for every kind of script.
func TestScriptIsKnftables(t *testing.T) {
	bridged := pod1
	bridged.Bridged = true
	bridged.AllowedSources = []netip.Prefix{netip.MustParsePrefix("2001:db8:99::/64"), netip.MustParsePrefix("192.0.2.0/28")}
	other := Pod{HostIf: "dt2", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, Addrs: []netip.Addr{netip.MustParseAddr("fd00:1::3")}}
	cases := map[string]func(*tx) error{
		"add routed":     func(t *tx) error { return addPod(t, pod1, pool) },
		"add bridged":    func(t *tx) error { return addPod(t, bridged, pool) },
		"elements":       func(t *tx) error { return addPodElements(t, other, pool) },
		"remove routed":  func(t *tx) error { return removePod(t, pod1, pool) },
		"remove bridged": func(t *tx) error { return removePod(t, bridged, pool) },
		"prune pools":    func(t *tx) error { *t = *prunePools([]netip.Prefix{pool[0].CIDR, pool[2].CIDR}); return nil },
		"peer pools":     func(t *tx) error { *t = *peerPools(prefixes("fd00:10:244:2::/64", "10.244.2.0/24")); return nil },
	}
	for name, fill := range cases {
		script := &tx{}
		if err := fill(script); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(script.ops) == 0 {
			t.Fatalf("%s: empty script", name)
		}
		want := knft(knftables.NewFake("", ""), script).String()
		if got := script.String(); got != want {
			t.Errorf("%s: duet renders\n%s\nknftables renders\n%s", name, got, want)
		}
	}
}
