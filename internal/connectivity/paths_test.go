package connectivity

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/lab"
)

// fourByTen is a planned lab of 4 nodes with 10 dual-stack pods each,
// IPv6 first; paths needs no kernel.
func fourByTen() lab.State {
	s := lab.State{Outside: lab.Endpoint{NetNS: "duet-lab-outside", Addrs: []netip.Addr{netip.MustParseAddr("fd00:d0e7:ffff::fe"), netip.MustParseAddr("10.250.255.254")}}}
	for i := 1; i <= 4; i++ {
		n := fmt.Sprintf("node%d", i)
		s.Nodes = append(s.Nodes, lab.Node{Name: n, NetNS: "duet-lab-" + n, Addrs: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("fd00:d0e7:ffff::%d", i)), netip.MustParseAddr(fmt.Sprintf("10.250.255.%d", i))}})
		for j := 1; j <= 10; j++ {
			s.Pods = append(s.Pods, lab.Pod{Name: fmt.Sprintf("%s-pod%d", n, j), NetNS: fmt.Sprintf("duet-lab-%s-pod%d", n, j), Node: n,
				IPs: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("fd00:d0e7::%d:%d", i, j)), netip.MustParseAddr(fmt.Sprintf("10.250.%d.%d", i, j))}})
		}
	}
	return s
}

func nodeOf(name string) string { n, _, _ := strings.Cut(name, "-"); return n }

func TestPathsCoverEveryNodePair(t *testing.T) {
	ps := paths(fourByTen())
	pairs := map[[2]string]bool{}
	nodesWithPods := map[string]bool{}
	podsUsed := map[string]bool{}
	for _, p := range ps {
		for _, e := range []endpoint{p.src, p.dst} {
			if strings.Contains(e.name, "-pod") {
				nodesWithPods[nodeOf(e.name)] = true
				podsUsed[e.name] = true
			}
		}
		if p.name == "pod to pod, across nodes" {
			a, b := nodeOf(p.src.name), nodeOf(p.dst.name)
			if a > b {
				a, b = b, a
			}
			pairs[[2]string{a, b}] = true
		}
		// Every path has an address of each family at both ends, so Run
		// probes it in IPv6 and IPv4.
		for _, e := range []endpoint{p.src, p.dst} {
			if len(e.addrs) != 2 || !e.addrs[0].Is6() || !e.addrs[1].Is4() {
				t.Errorf("path %s: %s has %v", p.name, e.name, e.addrs)
			}
		}
	}
	for i := 1; i <= 4; i++ {
		for j := i + 1; j <= 4; j++ {
			if k := [2]string{fmt.Sprintf("node%d", i), fmt.Sprintf("node%d", j)}; !pairs[k] {
				t.Errorf("no pod-to-pod path between %s and %s", k[0], k[1])
			}
		}
	}
	if len(nodesWithPods) != 4 {
		t.Errorf("pods of only %v are probed", nodesWithPods)
	}
	if len(podsUsed) < 8 {
		t.Errorf("only %d distinct pods probed: %v", len(podsUsed), podsUsed)
	}
}

func TestRunWithoutPods(t *testing.T) {
	s := fourByTen()
	s.Pods = nil
	if _, err := Run(s); !errors.Is(err, ErrNoPods) || !strings.Contains(err.Error(), "--pods-per-node") {
		t.Fatalf("Run without pods: %v", err)
	}
}
