// Helpers that look at the kernel: netlink in a namespace, links,
// addresses, routes and duet's nftables tables.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// handle opens netlink in the namespace at path ("" for the host).
func handle(t *testing.T, path string) netlinksafe.Handle {
	t.Helper()
	var h netlinksafe.Handle
	var err error
	if path == "" {
		h, err = netlinksafe.NewHandle()
	} else {
		var nsh netns.NsHandle
		if nsh, err = netns.GetFromPath(path); err == nil {
			defer nsh.Close()
			h, err = netlinksafe.NewHandleAt(nsh)
		}
	}
	if err != nil {
		t.Fatalf("netlink in %q: %v", path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// addrs lists a link's addresses (nil link: all), retrying interrupted dumps.
func addrs(t *testing.T, h netlinksafe.Handle, link netlink.Link) []netlink.Addr {
	t.Helper()
	for try := 0; ; try++ {
		as, err := h.AddrList(link, netlink.FAMILY_ALL)
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < 5 {
			continue
		}
		if err != nil {
			t.Fatalf("addr list: %v", err)
		}
		return as
	}
}

// prefixes turns netlink addresses into prefixes.
func prefixes(as []netlink.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range as {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return out
}

// noTentative fails if any IPv6 address of the named links in the
// namespace at path ("" for the host; no names: every link) is tentative
// or failed DAD: right after ADD, IPv6 must be usable.
func noTentative(t *testing.T, path string, names ...string) {
	t.Helper()
	h := handle(t, path)
	var links []netlink.Link
	if len(names) == 0 {
		links = append(links, nil)
	}
	for _, name := range names {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Errorf("link %s in %q: %v", name, path, err)
			continue
		}
		links = append(links, l)
	}
	for _, l := range links {
		for _, a := range addrs(t, h, l) {
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
				t.Errorf("address %s (link %d) in %q is tentative or failed DAD right after ADD (flags %#x)", a.IPNet, a.LinkIndex, path, a.Flags)
			}
		}
	}
}

// linkExists says whether the namespace at path ("" for the host) has the link.
func linkExists(t *testing.T, path, name string) bool {
	t.Helper()
	_, err := handle(t, path).LinkByName(name)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatalf("link %s in %q: %v", name, path, err)
	}
	return err == nil
}

// dtLinks lists the host links named like duet's host ends: "dt" and 11
// hex digits (other packages' tests use shorter dt names of their own).
func dtLinks(t *testing.T) map[string]bool {
	t.Helper()
	ls, err := handle(t, "").LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range ls {
		if name := l.Attrs().Name; duetHostIf.MatchString(name) {
			out[name] = true
		}
	}
	return out
}

// testRanges hold every address these tests use.
var testRanges = []netip.Prefix{netip.MustParsePrefix("fd00:e2e::/32"), netip.MustParsePrefix("10.250.128.0/18")}

// testRoutes lists the host's routes (every table) into testRanges, as
// "dst dev table".
func testRoutes(t *testing.T) map[string]bool {
	t.Helper()
	h := handle(t, "")
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(r.Dst.IP)
		if testRanges[0].Contains(ip.Unmap()) || testRanges[1].Contains(ip.Unmap()) {
			out[fmt.Sprintf("%s dev %d table %d", r.Dst, r.LinkIndex, r.Table)] = true
		}
	}
	return out
}

var duetHostIf = regexp.MustCompile(`^dt[0-9a-f]{11}$`)

// nftMentions says whether duet's nftables tables mention word (a host
// interface name): its elements must go when its pod goes.
func nftMentions(t *testing.T, word string) bool {
	t.Helper()
	for _, fam := range []string{"inet", "bridge"} {
		out, err := exec.Command("nft", "list", "table", fam, "duet").CombinedOutput()
		if err == nil && strings.Contains(string(out), word) {
			return true
		}
	}
	return false
}
