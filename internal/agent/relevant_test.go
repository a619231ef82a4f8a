package agent

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/duetnet/duet/internal/cluster"
)

func TestRelevant(t *testing.T) {
	node := func(addrs []string, beat time.Time) []byte {
		n := cluster.Node{Name: "n1", Routing: "direct", Instance: "i1", Heartbeat: beat}
		for _, a := range addrs {
			n.Addrs = append(n.Addrs, netip.MustParseAddr(a))
		}
		raw, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	t0 := time.Unix(1_800_000_000, 0)
	both := []string{"fd00::1", "10.0.0.1"}
	for _, tc := range []struct {
		name        string
		key         string
		prev, value []byte
		want        bool
	}{
		{"IPv6 block claimed", "claims/fd00:1::/122", nil, []byte("n1"), true},
		{"IPv4 block claimed", "claims/10.1.0.0/26", nil, []byte("n1"), true},
		{"block created", "blocks/n1/fd00:1::/122", nil, []byte("{}"), true},
		{"block deleted", "blocks/n1/10.1.0.0/26", []byte("{}"), nil, true},
		{"allocation in a block", "blocks/n1/fd00:1::/122", []byte("{}"), []byte(`{"x":1}`), false},
		{"handle", "handles/net/c1/eth0", nil, []byte("{}"), false},
		{"node joins", "nodes/n1", nil, node(both, t0), true},
		{"node leaves", "nodes/n1", node(both, t0), nil, true},
		{"heartbeat only", "nodes/n1", node(both, t0), node(both, t0.Add(5*time.Second)), false},
		{"node gains IPv6", "nodes/n1", node([]string{"10.0.0.1"}, t0), node(both, t0), true},
		{"corrupt record", "nodes/n1", []byte("{"), node(both, t0), true},
	} {
		if got := Relevant(tc.key, tc.prev, tc.value); got != tc.want {
			t.Errorf("%s: Relevant(%s) = %v, want %v", tc.name, tc.key, got, tc.want)
		}
	}
}
