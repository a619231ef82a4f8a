// Privileged test of DefaultRouteMTU in a namespace of its own. Run as
// root: go test -run TestDefaultRouteMTU ./internal/kernel/
package kernel_test

import (
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

// TestDefaultRouteMTU walks the cases the FIB lookup answers (a default
// route of each family, none at all) and the one it leaves to the route
// listing (a more specific route covering the lookup's key), IPv6 first.
func TestDefaultRouteMTU(t *testing.T) {
	kerneltest.RequireRoot(t)
	path := kerneltest.NetNS(t)
	name := kerneltest.NetNSName(path)
	ip := func(args ...string) { kerneltest.Run(t, "ip", append([]string{"-n", name}, args...)...) }
	ip("link", "add", "u6", "mtu", "1400", "type", "veth", "peer", "name", "u6p")
	ip("link", "add", "u4", "mtu", "1300", "type", "veth", "peer", "name", "u4p")
	for _, l := range []string{"u6", "u6p", "u4", "u4p"} {
		ip("link", "set", l, "up")
	}
	ip("addr", "add", "2001:db8:1::1/64", "dev", "u6", "nodad")
	ip("addr", "add", "192.0.2.1/24", "dev", "u4")
	nsh, err := ns.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	mtu := func() int {
		t.Helper()
		var m int
		if err := nsh.Do(func(ns.NetNS) error { var err error; m, err = kernel.DefaultRouteMTU(); return err }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	steps := []struct {
		what string
		do   []string
		want int
	}{
		{"no default route", nil, kernel.FallbackMTU},
		{"IPv4 default only", []string{"route", "add", "default", "via", "192.0.2.2"}, 1300},
		{"IPv6 default wins", []string{"-6", "route", "add", "default", "via", "2001:db8:1::2", "dev", "u6"}, 1400},
		{"a route covering :: is not the default", []string{"-6", "route", "add", "::/1", "dev", "u4"}, 1400},
		{"the route's own mtu", []string{"-6", "route", "replace", "default", "via", "2001:db8:1::2", "dev", "u6", "mtu", "1350"}, 1350},
	}
	for _, s := range steps {
		if s.do != nil {
			ip(s.do...)
		}
		if got := mtu(); got != s.want {
			t.Errorf("%s: DefaultRouteMTU = %d, want %d", s.what, got, s.want)
		}
	}
}
