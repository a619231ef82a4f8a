// Privileged test of OnLinkPrefixes in a namespace of its own. Run as
// root: go test -run TestOnLinkPrefixes ./internal/kernel/
package kernel_test

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// TestOnLinkPrefixes: an uplink's networks in both families (IPv6 first,
// an IPv4 point-to-point address by its local side, an IPv4 address of
// link scope, whose network is on-link all the same), and none of what
// the dump also holds: IPv6 link-local addresses, single addresses
// (/128, /32), lo, and duet's pod veths ("dt…"), even with a global
// prefix, many of them as on a busy node.
func TestOnLinkPrefixes(t *testing.T) {
	kerneltest.RequireRoot(t)
	path := kerneltest.NetNS(t)
	name := kerneltest.NetNSName(path)
	var b strings.Builder
	b.WriteString("link set lo up\naddr add 2001:db8:ff::1/64 dev lo\n")
	b.WriteString("link add up0 type veth peer name up0p\nlink set up0 up\nlink set up0p up\n")
	b.WriteString("addr add 2001:db8:1::5/64 dev up0 nodad\naddr add 2001:db8:2::5/128 dev up0 nodad\n")
	b.WriteString("addr add 192.0.2.5/24 dev up0\naddr add 198.51.100.1 peer 198.51.100.2/31 dev up0\n")
	b.WriteString("addr add 203.0.113.9/32 dev up0\naddr add 10.9.0.1/16 scope link dev up0\n")
	for i := range 50 {
		fmt.Fprintf(&b, "link add dt%d type veth peer name p%d\nlink set dt%d up\naddr add 169.254.1.1/32 dev dt%d\n", i, i, i, i)
	}
	b.WriteString("addr add 2001:db8:3::1/64 dev dt0 nodad\n")
	cmd := exec.Command("ip", "-n", name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	n, err := kernel.OpenNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	got, err := n.OnLinkPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, p := range got {
		have = append(have, p.Dev+" "+p.Prefix.String())
	}
	slices.Sort(have)
	want := []string{"up0 10.9.0.0/16", "up0 192.0.2.0/24", "up0 198.51.100.0/31", "up0 2001:db8:1::/64"}
	if !slices.Equal(have, want) {
		t.Fatalf("on-link prefixes %q, want %q", have, want)
	}
}
