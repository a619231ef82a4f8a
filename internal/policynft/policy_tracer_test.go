package policynft

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/duetnet/duet/internal/policy"
)

// A tracer pushes a virtual packet through the base chains of a
// knftables.Fake's table and returns the verdict, in the manner of
// Kubernetes' pkg/proxy/nftables/helpers_test.go. It understands exactly
// the expressions the policy table uses and fails the test on anything
// else, so a rule it cannot read is never silently skipped.

// vpacket is a virtual packet as the forward hook sees it.
type vpacket struct {
	src, dst netip.Addr
	proto    policy.Proto
	dport    uint16 // TCP, UDP, SCTP
	icmpType uint8  // ICMPv6
	ct       string // new (default), established, related, invalid, untracked
}

func (p vpacket) String() string {
	ct := p.ct
	if ct == "" {
		ct = "new"
	}
	if p.proto == policy.ICMPv6 {
		return p.src.String() + " > " + p.dst.String() + " icmpv6 type " + strconv.Itoa(int(p.icmpType)) + " (" + ct + ")"
	}
	return p.src.String() + " > " + p.dst.String() + " " + p.proto.String() + "/" + strconv.Itoa(int(p.dport)) + " (" + ct + ")"
}

type tracer struct {
	t     *testing.T
	table *knftables.FakeTable
	path  []string // rules that matched, for failure messages
}

func newTracer(t *testing.T, fake *knftables.Fake) *tracer {
	t.Helper()
	if fake.Table == nil {
		t.Fatal("tracer: the fake has no table")
	}
	return &tracer{t: t, table: fake.Table}
}

// verdict runs p through every base chain on hook, lowest priority
// first; a drop anywhere drops, and a base chain that ends (or returns)
// applies its policy, accept unless set.
func (tr *tracer) verdict(hook knftables.BaseChainHook, p vpacket) string {
	tr.path = nil
	var bases []*knftables.FakeChain
	for _, c := range tr.table.Chains {
		if c.Hook != nil && *c.Hook == hook {
			bases = append(bases, c)
		}
	}
	slices.SortFunc(bases, func(a, b *knftables.FakeChain) int {
		pa, _ := knftables.ParsePriority(knftables.InetFamily, string(*a.Priority))
		pb, _ := knftables.ParsePriority(knftables.InetFamily, string(*b.Priority))
		return pa - pb
	})
	for _, c := range bases {
		v := tr.chain(c.Name, p, 0)
		if v == "" && c.Policy != nil {
			v = string(*c.Policy)
		}
		if v == "drop" {
			return "drop"
		}
	}
	return "accept"
}

// chain returns accept or drop, or "" when the chain ends or returns.
func (tr *tracer) chain(name string, p vpacket, depth int) string {
	c := tr.table.Chains[name]
	if c == nil || depth > 16 {
		tr.t.Fatalf("tracer: no chain %q (or a loop)", name)
	}
	for _, r := range c.Rules {
		v, matched := tr.rule(r.Rule, p)
		if !matched {
			continue
		}
		tr.path = append(tr.path, name+": "+r.Rule)
		switch {
		case v == "accept" || v == "drop":
			return v
		case v == "return":
			return ""
		case strings.HasPrefix(v, "jump "):
			if w := tr.chain(strings.TrimPrefix(v, "jump "), p, depth+1); w != "" {
				return w
			}
		case strings.HasPrefix(v, "goto "):
			return tr.chain(strings.TrimPrefix(v, "goto "), p, depth+1)
		case v == "":
			// a match with no verdict (counter only): go on
		default:
			tr.t.Fatalf("tracer: verdict %q in %q", v, r.Rule)
		}
	}
	return ""
}

// rule evaluates one rule: whether every match holds, and its verdict.
func (tr *tracer) rule(rule string, p vpacket) (string, bool) {
	toks := tokens(rule)
	for i := 0; i < len(toks); {
		switch tok := toks[i]; tok {
		case "counter":
			i++
		case "accept", "drop", "return":
			return tok, true
		case "jump", "goto":
			return tok + " " + toks[i+1], true
		case "ct": // ct state a,b
			if toks[i+1] != "state" {
				tr.t.Fatalf("tracer: %q", rule)
			}
			ct := p.ct
			if ct == "" {
				ct = "new"
			}
			if !slices.Contains(list(toks[i+2]), ct) {
				return "", false
			}
			i += 3
		case "meta": // meta l4proto NAME
			if toks[i+1] != "l4proto" {
				tr.t.Fatalf("tracer: %q", rule)
			}
			if protoNumber(tr.t, toks[i+2]) != p.proto {
				return "", false
			}
			i += 3
		case "icmpv6": // icmpv6 type NAME or { NAME, ... }
			if toks[i+1] != "type" {
				tr.t.Fatalf("tracer: %q", rule)
			}
			if !p.src.Is6() || p.proto != policy.ICMPv6 {
				return "", false
			}
			if !slices.ContainsFunc(list(toks[i+2]), func(n string) bool { return icmpv6Type(tr.t, n) == p.icmpType }) {
				return "", false
			}
			i += 3
		case "ip", "ip6":
			if (tok == "ip6") != p.src.Is6() {
				return "", false // the family does not match
			}
			addr := p.src
			if toks[i+1] == "daddr" {
				addr = p.dst
			} else if toks[i+1] != "saddr" {
				tr.t.Fatalf("tracer: %q", rule)
			}
			switch {
			case toks[i+2] == "vmap": // ip6 daddr vmap @map
				v, ok := tr.vmap(strings.TrimPrefix(toks[i+3], "@"), addr)
				if !ok {
					return "", false
				}
				return v, true
			case toks[i+2] == ".": // ip6 saddr . meta l4proto . th dport @set
				if len(toks) < i+9 || strings.Join(toks[i+2:i+8], " ") != ". meta l4proto . th dport" {
					tr.t.Fatalf("tracer: %q", rule)
				}
				if !tr.inConcat(strings.TrimPrefix(toks[i+8], "@"), addr, p) {
					return "", false
				}
				i += 9
			case strings.HasPrefix(toks[i+2], "@"): // ip6 saddr @set
				if !tr.inSet(strings.TrimPrefix(toks[i+2], "@"), addr) {
					return "", false
				}
				i += 3
			default:
				tr.t.Fatalf("tracer: %q", rule)
			}
		default:
			tr.t.Fatalf("tracer: unknown token %q in %q", tok, rule)
		}
	}
	return "", true
}

func (tr *tracer) set(name string) *knftables.FakeSet {
	s := tr.table.Sets[name]
	if s == nil {
		tr.t.Fatalf("tracer: no set %q", name)
	}
	return s
}

func (tr *tracer) inSet(name string, a netip.Addr) bool {
	for _, e := range tr.set(name).Elements {
		if prefixOf(tr.t, e.Key[0]).Contains(a) {
			return true
		}
	}
	return false
}

func (tr *tracer) inConcat(name string, a netip.Addr, p vpacket) bool {
	for _, e := range tr.set(name).Elements {
		if len(e.Key) != 3 {
			tr.t.Fatalf("tracer: element %v of %s", e.Key, name)
		}
		if !prefixOf(tr.t, e.Key[0]).Contains(a) || protoNumber(tr.t, e.Key[1]) != p.proto {
			continue
		}
		from, to, _ := strings.Cut(e.Key[2], "-")
		if to == "" {
			to = from
		}
		f, err1 := strconv.Atoi(from)
		t, err2 := strconv.Atoi(to)
		if err1 != nil || err2 != nil {
			tr.t.Fatalf("tracer: port %q", e.Key[2])
		}
		if int(p.dport) >= f && int(p.dport) <= t {
			return true
		}
	}
	return false
}

func (tr *tracer) vmap(name string, a netip.Addr) (string, bool) {
	m := tr.table.Maps[name]
	if m == nil {
		tr.t.Fatalf("tracer: no map %q", name)
	}
	for _, e := range m.Elements {
		if netip.MustParseAddr(e.Key[0]) == a {
			return e.Value[0], true
		}
	}
	return "", false
}

// tokens splits a rule on spaces, keeping "{ a, b }" as one token "a,b".
func tokens(rule string) []string {
	var out []string
	f := strings.Fields(rule)
	for i := 0; i < len(f); i++ {
		if f[i] != "{" {
			out = append(out, f[i])
			continue
		}
		var items []string
		for i++; f[i] != "}"; i++ {
			items = append(items, strings.TrimSuffix(f[i], ","))
		}
		out = append(out, strings.Join(items, ","))
	}
	return out
}

func list(tok string) []string { return strings.Split(tok, ",") }

func prefixOf(t *testing.T, s string) netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("tracer: address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func protoNumber(t *testing.T, name string) policy.Proto {
	switch name {
	case "tcp":
		return policy.TCP
	case "udp":
		return policy.UDP
	case "sctp":
		return policy.SCTP
	case "ipv6-icmp", "icmpv6":
		return policy.ICMPv6
	case "icmp":
		return policy.ICMP
	}
	t.Fatalf("tracer: protocol %q", name)
	return 0
}

func icmpv6Type(t *testing.T, name string) uint8 {
	types := map[string]uint8{
		"echo-request": 128, "echo-reply": 129,
		"mld-listener-query": 130, "mld-listener-report": 131, "mld-listener-done": 132,
		"nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
		"nd-neighbor-advert": 136, "nd-redirect": 137, "mld2-listener-report": 143,
	}
	v, ok := types[name]
	if !ok {
		t.Fatalf("tracer: ICMPv6 type %q", name)
	}
	return v
}
