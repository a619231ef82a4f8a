package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/ipam"
)

func TestParseDefaults(t *testing.T) {
	n, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"duet","type":"duet"}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.Mode != ModeRouted || len(n.Families) != 2 || n.Families[0] != ipam.IPv6 || n.Pools != nil || n.Datastore.Path != DefaultBoltPath || n.MTU != 0 {
		t.Fatalf("defaults: %+v", n)
	}
}

func TestParseFull(t *testing.T) {
	n, err := Parse([]byte(`{"cniVersion":"1.0.0","name":"n","type":"duet","mode":"bridge","families":"dual",
		"pools":[{"cidr":"2001:db8:1::/64","assign":"mac"},{"cidr":"10.1.0.0/16","blockSize":24,"natOutgoing":false}],
		"mtu":1400,"datastore":{"type":"bolt","path":"/tmp/x.db"},"nodeName":"n1","dns":{"nameservers":["fd00::53"]},
		"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != DefaultBridge || n.Pools[0].Assign != ipam.MAC || n.Pools[0].BlockSize != 80 || n.Pools[1].BlockSize != 24 || n.Pools[1].NATOutgoing {
		t.Errorf("got %+v", n)
	}
	if !n.HasAttachments || len(n.ValidAttachments) != 1 || n.ValidAttachments[0].IfName != "eth0" {
		t.Errorf("attachments %+v", n.ValidAttachments)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ conf, field, text string }{
		{`{"name":"n","colour":"blue"}`, "colour", "not a known key"},
		{`{"name":"n","pools":[{"cidr":"fd00::/48","size":1}]}`, "pools[0].size", "not a known key"},
		{`{"name":"n","datastore":{"type":"bolt","file":"x"}}`, "datastore.file", "not a known key"},
		{`{"name":"n",`, "network configuration", "not a JSON object"},
		{`[]`, "network configuration", "not a JSON object"},
		{`{"name":"n","mode":"overlay"}`, "mode", "routed"},
		{`{"name":"n","families":"ipv5"}`, "families", "dual"},
		{`{"name":"n","pools":[{"cidr":"fd00::/48"}]}`, "pools", "no IPv4 pool"},
		{`{"name":"n","families":"ipv6","pools":[{"cidr":"fd00::/48"},{"cidr":"fd00::/64"}]}`, "pools[1].cidr", "overlaps pools[0]"},
		{`{"name":"n","families":"ipv6","pools":[{"cidr":"fd00::/96","assign":"mac"}]}`, "pools[0].cidr", "/80 or larger"},
		{`{"name":"n","families":"ipv4","pools":[{"cidr":"10.0.0.0/28","blockSize":26}]}`, "pools[0].cidr", "block size"},
		{`{"name":"n","pools":[{"blockSize":26}]}`, "pools[0].cidr", "missing"},
		{`{"name":"n","mtu":1000}`, "mtu", "1280"},
		{`{"name":"n","mtu":"big"}`, "mtu", "wrong type"},
		{`{"name":"n","bridge":"br0"}`, "bridge", "bridge mode"},
		{`{"name":"n","mode":"bridge","bridge":"a-very-long-bridge-name"}`, "bridge", "15"},
		{`{"name":"n","ipam":{"type":"host-local"}}`, "ipam", "own addressing"},
		{`{"type":"duet"}`, "name", "missing"},
		{`{"name":"n","datastore":{"type":"consul"}}`, "datastore.type", "bolt"},
		{`{"name":"n","datastore":{"type":"etcd"}}`, "datastore.endpoints", "missing"},
		{`{"name":"n","datastore":{"type":"etcd","endpoints":["fd00::1:2379"]}}`, "datastore.endpoints[0]", "http://"},
		{`{"name":"n","datastore":{"type":"etcd","endpoints":["http://[fd00::1]:2379"],"path":"/x"}}`, "datastore.path", "bolt"},
		{`{"name":"n","datastore":{"type":"etcd","endpoints":["http://[fd00::1]:2379"],"caFile":"/etc/ca.pem"}}`, "datastore.endpoints[0]", "https://"},
		{`{"name":"n","datastore":{"type":"etcd","endpoints":["https://[fd00::1]:2379"],"caFile":"ca.pem"}}`, "datastore.caFile", "absolute"},
		{`{"name":"n","datastore":{"type":"etcd","endpoints":["https://[fd00::1]:2379"],"certFile":"/c.pem"}}`, "datastore.certFile", "keyFile"},
		{`{"name":"n","datastore":{"path":"/x","keyFile":"/k.pem"}}`, "datastore.keyFile", "etcd"},
		{`{"name":"n","datastore":{"path":"rel.db"}}`, "datastore.path", "absolute"},
		{`{"name":"n","sysctlLog":"sysctl.jsonl"}`, "sysctlLog", "absolute"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			_, err := Parse([]byte(tc.conf))
			var ce *Error
			if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(ce.Msg, tc.text) {
				t.Fatalf("Parse(%s) = %v; want field %q with %q", tc.conf, err, tc.field, tc.text)
			}
		})
	}
}

func TestParseIPAMPlugin(t *testing.T) {
	_, _, c, _, _, err := ParseIPAMPlugin([]byte(`{"cniVersion":"1.0.0","name":"b","type":"bridge","bridge":"cni0","isGateway":true,
		"ipam":{"type":"duet-ipam","families":"ipv6","pools":[{"cidr":"fd00:2::/48"}]}}`))
	if err != nil || len(c.Families) != 1 || c.Pools[0].CIDR.String() != "fd00:2::/48" {
		t.Fatalf("%+v %v", c, err)
	}
	_, _, _, _, _, err = ParseIPAMPlugin([]byte(`{"name":"b","type":"bridge","ipam":{"type":"duet-ipam","subnet":"10.0.0.0/8"}}`))
	if err == nil || !strings.Contains(err.Error(), "ipam.subnet") {
		t.Fatalf("want ipam.subnet named, got %v", err)
	}
	_, _, _, _, _, err = ParseIPAMPlugin([]byte(`{"name":"b","type":"bridge","ipam":{"type":"duet-ipam","families":"both"}}`))
	if err == nil || !strings.Contains(err.Error(), "ipam.families") {
		t.Fatalf("want ipam.families named, got %v", err)
	}
}

// FuzzParse checks that no input panics the parser, and that whatever it
// accepts is internally consistent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"name":"n"}`,
		`{"name":"n","mode":"bridge","families":"ipv6","pools":[{"cidr":"fd00::/64","assign":"mac"}]}`,
		`{"name":"n","pools":[{"cidr":"fd00::/48","blockSize":120},{"cidr":"10.0.0.0/16"}],"mtu":1500}`,
		`{"name":"n","datastore":{"type":"bolt","path":"/x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Field == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		if n.Name == "" || len(n.Families) == 0 || n.Datastore.Path == "" {
			t.Fatalf("accepted an incomplete config: %+v", n)
		}
		if err := ipam.ValidatePools(n.Pools, "pools"); err != nil {
			t.Fatalf("accepted overlapping pools: %v", err)
		}
		for i, p := range n.Pools {
			if err := p.Validate("pools"); err != nil {
				t.Fatalf("accepted invalid pool %d: %v", i, err)
			}
		}
	})
}
