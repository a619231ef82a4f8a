package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestSubtract(t *testing.T) {
	for _, tc := range []struct {
		p     string
		minus []string
		want  []string
	}{
		// Seed 004: everything IPv6 but the ULA range.
		{"::/0", []string{"fc00::/7"}, []string{"::/1", "8000::/2", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fe00::/7"}},
		{"2001:db8::/32", []string{"2001:db8::/33"}, []string{"2001:db8:8000::/33"}},
		{"2001:db8::/32", []string{"2001:db8:1::/48", "2001:db8:1:2::/64"}, []string{ // nested excepts
			"2001:db8::/48", "2001:db8:2::/47", "2001:db8:4::/46", "2001:db8:8::/45", "2001:db8:10::/44",
			"2001:db8:20::/43", "2001:db8:40::/42", "2001:db8:80::/41", "2001:db8:100::/40", "2001:db8:200::/39",
			"2001:db8:400::/38", "2001:db8:800::/37", "2001:db8:1000::/36", "2001:db8:2000::/35",
			"2001:db8:4000::/34", "2001:db8:8000::/33"}},
		{"2001:db8::/127", []string{"2001:db8::1/128"}, []string{"2001:db8::/128"}},
		{"2001:db8::/32", []string{"2001:db8::/32"}, nil},                    // all of it
		{"2001:db8::/32", []string{"2001::/16"}, nil},                        // covered
		{"2001:db8::/32", []string{"10.0.0.0/8"}, []string{"2001:db8::/32"}}, // other family: nothing
		{"2001:db8::/32", []string{"2001:db9::/32"}, []string{"2001:db8::/32"}},
		{"2001:db8::5/32", nil, []string{"2001:db8::/32"}}, // host bits masked
		{"0.0.0.0/0", []string{"10.0.0.0/8"}, []string{"0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"}},
		{"10.0.0.0/8", []string{"10.1.0.0/16", "10.0.0.0/16"}, []string{"10.2.0.0/15", "10.4.0.0/14", "10.8.0.0/13", "10.16.0.0/12", "10.32.0.0/11", "10.64.0.0/10", "10.128.0.0/9"}},
	} {
		got := Subtract(netip.MustParsePrefix(tc.p), prefixes(tc.minus...))
		if !slices.Equal(got, prefixes(tc.want...)) {
			t.Errorf("Subtract(%s, %v) = %v, want %v", tc.p, tc.minus, got, tc.want)
		}
	}
}

func TestUnion(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"::/1", "8000::/1"}, []string{"::/0"}},
		{[]string{"::/1", "8000::/1", "0.0.0.0/1"}, []string{"::/0", "0.0.0.0/1"}}, // families never merge
		{[]string{"2001:db8::1/128", "2001:db8::/128", "2001:db8::2/127"}, []string{"2001:db8::/126"}},
		{[]string{"2001:db8::/32", "2001:db8:5::/48", "2001:db8::1/128"}, []string{"2001:db8::/32"}},
		{[]string{"2001:db8::/33", "2001:db8:8000::/34", "2001:db8:c000::/34"}, []string{"2001:db8::/32"}}, // cascading merge
		{[]string{"10.0.0.1/32", "10.0.0.1/32"}, []string{"10.0.0.1/32"}},
		{nil, nil},
	} {
		if got := Union(prefixes(tc.in...)); !slices.Equal(got, prefixes(tc.want...)) {
			t.Errorf("Union(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// randPrefix draws prefixes that collide often: a few fixed roots, short
// random suffixes.
func randPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		b := netip.MustParseAddr("2001:db8::").As16()
		b[4], b[5] = byte(r.IntN(4)), byte(r.IntN(256))
		return netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(17)).Masked()
	}
	b := [4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), 0}
	return netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(17)).Masked()
}

func randAddrIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr()
	for i := p.Bits(); i < a.BitLen(); i++ {
		if r.IntN(2) == 0 {
			a = flipBit(a, i)
		}
	}
	return a
}

// TestSubtractProperties: on random inputs, the result is exactly p minus
// the excepts, disjoint, and minimal (Union cannot merge it further).
func TestSubtractProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		p := randPrefix(r)
		var minus []netip.Prefix
		for j := r.IntN(4); j > 0; j-- {
			minus = append(minus, randPrefix(r))
		}
		got := Subtract(p, minus)
		if !slices.Equal(Union(got), got) {
			t.Fatalf("Subtract(%s, %v) = %v: not minimal and disjoint", p, minus, got)
		}
		for k := 0; k < 50; k++ {
			cand := []netip.Prefix{p}
			cand = append(cand, minus...)
			a := randAddrIn(r, cand[r.IntN(len(cand))])
			want := p.Contains(a) && !slices.ContainsFunc(minus, func(m netip.Prefix) bool { return m.Contains(a) })
			if have := slices.ContainsFunc(got, func(q netip.Prefix) bool { return q.Contains(a) }); have != want {
				t.Fatalf("Subtract(%s, %v) = %v: %s in it = %v, want %v", p, minus, got, a, have, want)
			}
		}
	}
}

func TestUnionProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		var in []netip.Prefix
		for j := 1 + r.IntN(6); j > 0; j-- {
			in = append(in, randPrefix(r))
		}
		got := Union(in)
		for j := 1; j < len(got); j++ {
			if got[j-1].Overlaps(got[j]) || comparePrefix(got[j-1], got[j]) >= 0 {
				t.Fatalf("Union(%v) = %v: not sorted and disjoint", in, got)
			}
		}
		for k := 0; k < 50; k++ {
			a := randAddrIn(r, in[r.IntN(len(in))])
			if r.IntN(4) == 0 {
				a = randAddrIn(r, randPrefix(r))
			}
			want := slices.ContainsFunc(in, func(q netip.Prefix) bool { return q.Contains(a) })
			if have := slices.ContainsFunc(got, func(q netip.Prefix) bool { return q.Contains(a) }); have != want {
				t.Fatalf("Union(%v) = %v: %s in it = %v, want %v", in, got, a, have, want)
			}
		}
		if again := Union(got); !slices.Equal(again, got) {
			t.Fatalf("Union is not idempotent: %v then %v", got, again)
		}
	}
}

func ExampleSubtract() {
	fmt.Println(Subtract(netip.MustParsePrefix("::/0"), prefixes("fc00::/7")))
	// Output: [::/1 8000::/2 c000::/3 e000::/4 f000::/5 f800::/6 fe00::/7]
}
