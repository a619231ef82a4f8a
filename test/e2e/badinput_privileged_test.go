// Bad input through the real binary: each fails with the documented CNI
// code and a message naming the field and the fix, and leaves nothing
// behind.
//
// Privileged: run as root with
//
//	go test ./test/e2e/
//
// (see main_privileged_test.go).

package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/duetnet/duet/internal/kernel/kerneltest"
)

func TestBadInput(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	const rangeN = 0x12
	v6, v4 := testPool(true, rangeN).String(), testPool(false, rangeN).String()
	pool := func(cidr string, kv ...any) map[string]any {
		m := map[string]any{"cidr": cidr}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		keys  map[string]any // over a valid dual-stack configuration
		raw   string         // stdin as is, instead of keys
		netns func(t *testing.T, valid string) string
		codes []uint
		msg   []string // the message contains each
	}{
		{name: "malformed JSON", raw: `{"cniVersion": "1.1.0", "name": "x", "type": "duet", `, codes: []uint{6, 7}},
		{name: "unknown key", keys: map[string]any{"bogusKey": 1}, codes: []uint{7}, msg: []string{"bogusKey"}},
		{name: "overlapping pools", keys: map[string]any{"pools": []any{pool(v6), pool("fd00:e2e:12::/80"), pool(v4)}}, codes: []uint{7}, msg: []string{"pools[1].cidr", "overlap"}},
		{name: "blockSize too small (IPv6 /60)", keys: map[string]any{"pools": []any{pool(v6, "blockSize", 60), pool(v4)}}, codes: []uint{7}, msg: []string{"pools[0].blockSize", "64"}},
		{name: "blockSize leaves under 4 addresses (IPv4 /31)", keys: map[string]any{"pools": []any{pool(v6), pool(v4, "blockSize", 31)}}, codes: []uint{7}, msg: []string{"pools[1].blockSize", "at most 30"}},
		{name: "pool smaller than its block", keys: map[string]any{"pools": []any{pool("fd00:e2e:12::/124", "blockSize", 122), pool(v4)}}, codes: []uint{7}, msg: []string{"pools[0].cidr", "/122"}},
		{name: "mac assign with a /96 pool", keys: map[string]any{"pools": []any{pool("fd00:e2e:12::/96", "assign", "mac"), pool(v4)}}, codes: []uint{7}, msg: []string{"pools[0]", "/80"}},
		{name: "missing netns path", netns: func(*testing.T, string) string { return "" }, codes: []uint{4}, msg: []string{"CNI_NETNS"}},
		{name: "netns path that does not exist", netns: func(t *testing.T, _ string) string {
			return filepath.Join(t.TempDir(), "no-such-netns")
		}, codes: []uint{4}, msg: []string{"no-such-netns"}},
		{name: "netns path that is a regular file", netns: func(t *testing.T, _ string) string {
			f := filepath.Join(t.TempDir(), "not-a-netns")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return f
		}, codes: []uint{4}, msg: []string{"not-a-netns"}},
		{name: "interface name taken in the pod", netns: func(t *testing.T, valid string) string {
			kerneltest.Run(t, "ip", "-n", kerneltest.NetNSName(valid), "link", "add", "eth0", "type", "veth", "peer", "name", "other")
			return valid
		}, codes: []uint{101}, msg: []string{"eth0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := duetNetwork(t, map[string]any{"pools": testPools("dual", rangeN)})
			conf := maps.Clone(n.conf)
			maps.Copy(conf, tc.keys)
			stdin := jsonBytes(t, conf)
			if tc.raw != "" {
				stdin = []byte(tc.raw)
			}
			p := n.newPod(t)
			netns := p.path
			if tc.netns != nil {
				netns = tc.netns(t, p.path)
			}
			links, routes := dtLinks(t), testRoutes(t)

			e := execFail(t, execCmd("duet", "ADD", p.id, netns, p.ifName, stdin))
			t.Logf("code %d: %s", e.Code, e.Msg)
			if !slices.Contains(tc.codes, e.Code) {
				t.Errorf("code %d, want one of %v (msg %q)", e.Code, tc.codes, e.Msg)
			}
			if !contains(e.Msg, tc.msg...) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
			nothingLeft(t, n, p, links, routes)
			if tc.name == "interface name taken in the pod" && !linkExists(t, p.path, "eth0") {
				t.Error("the failed ADD removed the pod's own eth0")
			}
		})
	}
}

// TestExhaustedPool fills a /126 (two pod addresses: the first two are the
// subnet-router anycast and the gateway), then asks for a third.
func TestExhaustedPool(t *testing.T) {
	kerneltest.RequireRoot(t)
	kerneltest.Forwarding(t)
	n := duetNetwork(t, map[string]any{"families": "ipv6", "pools": []any{map[string]any{"cidr": "fd00:e2e:13::/126", "blockSize": 126}}})
	a, b, c := n.newPod(t), n.newPod(t), n.newPod(t)
	n.add(t, a)
	n.add(t, b)
	// STATUS says so before an ADD fails (code 50).
	if err := n.cni.GetStatusNetworkList(t.Context(), n.list); errCode(err) != 50 {
		t.Errorf("STATUS of a full pool = %v (code %d), want code 50", err, errCode(err))
	}
	links, routes := dtLinks(t), testRoutes(t)
	e := execFail(t, execCmd("duet", "ADD", c.id, c.path, c.ifName, jsonBytes(t, n.conf)))
	t.Logf("code %d: %s", e.Code, e.Msg)
	if e.Code != 100 || !contains(e.Msg, "fd00:e2e:13::/126", "exhausted") {
		t.Errorf("third ADD: code %d %q, want 100 naming the pool", e.Code, e.Msg)
	}
	nothingLeft(t, n, c, links, routes)
	// A freed address is usable again.
	n.del(t, a)
	if err := n.cni.GetStatusNetworkList(t.Context(), n.list); err != nil {
		t.Errorf("STATUS with a free address: %v", err)
	}
	n.add(t, c)
}

// nothingLeft checks that a failed ADD of p left no new host link, no
// route in the test ranges, no allocation and no nftables element.
func nothingLeft(t *testing.T, n *network, p *pod, linksBefore, routesBefore map[string]bool) {
	t.Helper()
	kernelUntouched(t, n, p, linksBefore, routesBefore)
	if a, ok := readStore(t, n.store).allocation(p.handle(n)); ok {
		t.Errorf("the failed ADD left an allocation: %+v", a)
	}
}

// kernelUntouched is nothingLeft's kernel half, for stores that are not
// n's bolt file.
func kernelUntouched(t *testing.T, n *network, p *pod, linksBefore, routesBefore map[string]bool) {
	t.Helper()
	for l := range dtLinks(t) {
		if !linksBefore[l] {
			t.Errorf("new host link %s after a failed ADD", l)
		}
	}
	for r := range testRoutes(t) {
		if !routesBefore[r] {
			t.Errorf("new host route %s after a failed ADD", r)
		}
	}
	if nftMentions(t, p.hostIf(n)) {
		t.Errorf("the failed ADD left nftables elements for %s", p.hostIf(n))
	}
	if linkExists(t, "", p.hostIf(n)) {
		t.Errorf("the failed ADD left the host end %s", p.hostIf(n))
	}
}
