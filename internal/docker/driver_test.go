package docker

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

// fakeKernel records what the driver asks of the host.
type fakeKernel struct {
	attached map[string]ipam.Allocation
	ports    []PortMap
	bridges  []string
}

func (k *fakeKernel) Attach(n *config.Network, a ipam.Allocation, _ []ipam.Pool, netns string, moves bool) (podnet.Result, error) {
	if !moves {
		panic("the driver must leave the container end to Docker")
	}
	k.attached[a.Handle.String()] = a
	res := podnet.Result{HostIfName: "dt-host", PodIfName: a.IfName}
	for _, ip := range a.IPs {
		if ip.Address.Addr().Is4() {
			res.Gateways = append(res.Gateways, podnet.GatewayV4)
		} else {
			res.Gateways = append([]netip.Addr{podnet.GatewayV6}, res.Gateways...)
		}
	}
	return res, nil
}

func (k *fakeKernel) Detach(n *config.Network, a ipam.Allocation, netns string) error {
	delete(k.attached, a.Handle.String())
	return nil
}
func (k *fakeKernel) HostPrefixes() ([]netip.Prefix, error) { return nil, nil }
func (k *fakeKernel) CheckPools([]netip.Prefix) error       { return nil }
func (k *fakeKernel) DeleteBridge(name string) error        { k.bridges = append(k.bridges, name); return nil }
func (k *fakeKernel) SyncPorts(m []PortMap) error           { k.ports = m; return nil }

type nopCloser struct{ store.Store }

func (nopCloser) Close() error { return nil }

func newTestDriver() (*Driver, *fakeKernel, *memstore.Store) {
	st := memstore.New()
	k := &fakeKernel{attached: map[string]ipam.Allocation{}}
	d := &Driver{Node: "n1", OpenStore: func() (store.Store, error) { return nopCloser{st}, nil }, Kernel: k,
		Rand: rand.NewChaCha8([32]byte{1}), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return d, k, st
}

// call posts one protocol request and decodes the answer into out.
func call(t *testing.T, h http.Handler, method string, req, out any) (int, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/"+method, bytes.NewReader(body)))
	if out != nil && rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: %v: %s", method, err, rec.Body)
		}
	}
	return rec.Code, rec.Body.String()
}

func TestProtocolLifecycle(t *testing.T) {
	d, k, st := newTestDriver()
	h := d.Handler()
	var act activateResponse
	call(t, h, "Plugin.Activate", nil, &act)
	if strings.Join(act.Implements, ",") != "NetworkDriver,IpamDriver" {
		t.Fatalf("Activate: %v", act.Implements)
	}
	if code, _ := call(t, h, "NetworkDriver.NoSuchMethod", nil, nil); code != 404 {
		t.Errorf("an unknown method answered %d, want 404", code)
	}
	// Docker's order for docker network create --ipv6 with no subnet,
	// IPv6 first here.
	var p6, p4 requestPoolResponse
	call(t, h, "IpamDriver.RequestPool", requestPoolRequest{AddressSpace: AddressSpace, V6: true}, &p6)
	call(t, h, "IpamDriver.RequestPool", requestPoolRequest{AddressSpace: AddressSpace}, &p4)
	c6, c4 := netip.MustParsePrefix(p6.Pool), netip.MustParsePrefix(p4.Pool)
	if !ipam.ULA.Contains(c6.Addr()) || c6.Bits() != 48 || !c4.Addr().Is4() {
		t.Fatalf("zero-config pools %s and %s, want a ULA /48 and an IPv4 pool", c6, c4)
	}
	if p6.Data[dataGateway] != netip.PrefixFrom(c6.Addr().Next(), 48).String() {
		t.Errorf("IPv6 gateway %q, want the pool's first address", p6.Data[dataGateway])
	}
	nid, eid := strings.Repeat("a", 64), strings.Repeat("e", 64)
	if code, body := call(t, h, "NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: nid,
		Options:  map[string]any{optEnableIPv6: true, optGeneric: map[string]any{}},
		IPv6Data: []ipamData{{Pool: p6.Pool, Gateway: p6.Data[dataGateway]}}, IPv4Data: []ipamData{{Pool: p4.Pool, Gateway: p4.Data[dataGateway]}}}, nil); code != 200 {
		t.Fatalf("CreateNetwork: %d %s", code, body)
	}
	var a6, a4 requestAddressResponse
	call(t, h, "IpamDriver.RequestAddress", requestAddressRequest{PoolID: p6.PoolID}, &a6)
	call(t, h, "IpamDriver.RequestAddress", requestAddressRequest{PoolID: p4.PoolID}, &a4)
	if pa := netip.MustParsePrefix(a6.Address); pa.Bits() != 128 || !c6.Contains(pa.Addr()) {
		t.Errorf("IPv6 address %s: want a /128 of %s", a6.Address, c6)
	}
	var ce createEndpointResponse
	call(t, h, "NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: nid, EndpointID: eid,
		Interface: &endpointInterface{Address: a4.Address, AddressIPv6: a6.Address}}, &ce)
	if ce.Interface == nil || ce.Interface.MacAddress == "" {
		t.Fatalf("CreateEndpoint answered no MAC: %+v", ce)
	}
	var j joinResponse
	call(t, h, "NetworkDriver.Join", joinRequest{NetworkID: nid, EndpointID: eid, SandboxKey: "/var/run/docker/netns/x",
		Options: map[string]any{optPortMap: []map[string]any{{"Proto": 6, "Port": 80, "HostPort": 8080}}}}, &j)
	if j.InterfaceName == nil || !strings.HasPrefix(j.InterfaceName.SrcName, "dc") || j.InterfaceName.DstPrefix != "eth" {
		t.Errorf("Join's interface: %+v", j.InterfaceName)
	}
	if j.Gateway != "169.254.1.1" || j.GatewayIPv6 != "fe80::1" || len(j.StaticRoutes) != 2 || !j.DisableGatewayService {
		t.Errorf("Join's gateways and routes: %+v", j)
	}
	if len(k.attached) != 1 {
		t.Fatalf("attached %d, want 1", len(k.attached))
	}
	call(t, h, "NetworkDriver.ProgramExternalConnectivity", externalConnectivityRequest{NetworkID: nid, EndpointID: eid}, nil)
	if len(k.ports) != 2 || k.ports[0].HostPort != 8080 {
		t.Errorf("ports from Join's bindings: %+v, want 8080 in both families", k.ports)
	}
	// Teardown in Docker's order leaves the store as it was but for the
	// zero-config pools, which stay.
	for _, m := range []struct {
		method string
		req    any
	}{
		{"NetworkDriver.RevokeExternalConnectivity", externalConnectivityRequest{NetworkID: nid, EndpointID: eid}},
		{"NetworkDriver.Leave", endpointRequest{NetworkID: nid, EndpointID: eid}},
		{"NetworkDriver.DeleteEndpoint", endpointRequest{NetworkID: nid, EndpointID: eid}},
		{"IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: p6.PoolID, Address: strings.Split(a6.Address, "/")[0]}},
		{"IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: p4.PoolID, Address: strings.Split(a4.Address, "/")[0]}},
		{"NetworkDriver.DeleteNetwork", networkRequest{NetworkID: nid}},
		{"IpamDriver.ReleasePool", releasePoolRequest{PoolID: p6.PoolID}},
		{"IpamDriver.ReleasePool", releasePoolRequest{PoolID: p4.PoolID}},
	} {
		if code, body := call(t, h, m.method, m.req, nil); code != 200 {
			t.Fatalf("%s: %d %s", m.method, code, body)
		}
	}
	if len(k.attached) != 0 || len(k.ports) != 0 {
		t.Errorf("left attached %v, ports %v", k.attached, k.ports)
	}
	_ = st.View(t.Context(), func(tx store.Tx) error {
		for _, p := range []string{"handles/", "blocks/", "claims/", networksPrefix, endpointsPrefix} {
			if kvs, _ := tx.List(p); len(kvs) > 0 {
				t.Errorf("left %d keys under %s: %s", len(kvs), p, kvs[0].Key)
			}
		}
		return nil
	})
}

func TestErrorsAreJSONAndNameTheFix(t *testing.T) {
	d, _, _ := newTestDriver()
	h := d.Handler()
	for _, c := range []struct {
		method string
		req    any
		want   string
	}{
		{"IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00::/127", V6: true}, "use /126 or larger"},
		{"IpamDriver.RequestPool", requestPoolRequest{Pool: "10.0.0.0/24", V6: true}, "not an IPv6 prefix"},
		{"IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00::/64", V6: true, Options: map[string]string{"duet.blocksize": "120"}}, "not one of duet's"},
		{"IpamDriver.RequestPool", requestPoolRequest{V6: true, Options: map[string]string{IPAMBlockSize: "120"}}, "give a --subnet"},
		{"IpamDriver.RequestAddress", requestAddressRequest{PoolID: "fd00:9::/64"}, "recreate the network"},
		{"NetworkDriver.Join", joinRequest{NetworkID: "nope", EndpointID: "e"}, "docker network rm"},
		{"NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: "n", Options: map[string]any{optGeneric: map[string]any{OptMode: "l2"}}}, "\"routed\""},
	} {
		code, body := call(t, h, c.method, c.req, nil)
		var e errResponse
		if code != 500 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Err, c.want) {
			t.Errorf("%s %+v: %d %s, want an Err saying %q", c.method, c.req, code, body, c.want)
		}
	}
	// An overlapping subnet names what it overlaps.
	call(t, h, "IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00:1::/64", V6: true}, nil)
	_, body := call(t, h, "IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00:1::/56", V6: true}, nil)
	if !strings.Contains(body, "overlaps fd00:1::/64") {
		t.Errorf("overlap: %s", body)
	}
	// The same subnet again is shared, counted, and released in turn.
	var p requestPoolResponse
	call(t, h, "IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00:1::/64", V6: true}, &p)
	if p.PoolID != "fd00:1::/64" {
		t.Errorf("second request of a pool: %+v", p)
	}
}

func TestPortMaps(t *testing.T) {
	addrs := []netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("10.0.0.5/32")}
	maps, err := portMaps([]portBinding{{Proto: 6, Port: 80, HostPort: 8080}, {Proto: 17, Port: 53, HostIP: "::1", HostPort: 5353}}, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 3 {
		t.Fatalf("maps %+v: want tcp in both families and udp on IPv6 only", maps)
	}
	script := PortsScript(maps)
	for _, want := range []string{
		"meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00::5]:80",
		"meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.5:80",
		"ip6 daddr ::1 udp dport 5353 dnat ip6 to [fd00::5]:53",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if s := PortsScript(nil); !strings.Contains(s, "delete table inet "+PortsTable) {
		t.Errorf("no ports: %q, want the table deleted", s)
	}
	for _, b := range []portBinding{{Proto: 6, Port: 80}, {Proto: 6, Port: 80, HostPort: 1, HostPortEnd: 9}, {Proto: 1, Port: 1, HostPort: 1}} {
		if _, err := portMaps([]portBinding{b}, addrs); err == nil {
			t.Errorf("binding %+v accepted", b)
		}
	}
	if err := conflicts(append(maps, PortMap{Proto: "tcp", HostPort: 8080, Addr: netip.MustParseAddr("fd00::6"), Port: 80})); err == nil {
		t.Error("two containers on one host port accepted")
	}
}

// An IPv6-only network (Docker 27+: --ipv6 --ipv4=false) has no IPv4
// pool, and its containers get an IPv6 gateway alone.
func TestIPv6OnlyNetwork(t *testing.T) {
	d, _, _ := newTestDriver()
	h := d.Handler()
	var p6 requestPoolResponse
	call(t, h, "IpamDriver.RequestPool", requestPoolRequest{Pool: "fd00:6::/64", V6: true}, &p6)
	nid, eid := strings.Repeat("b", 64), strings.Repeat("f", 64)
	if code, body := call(t, h, "NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: nid,
		Options:  map[string]any{optEnableIPv6: true, optEnableIPv4: false},
		IPv6Data: []ipamData{{Pool: p6.Pool, Gateway: p6.Data[dataGateway]}}}, nil); code != 200 {
		t.Fatalf("CreateNetwork: %s", body)
	}
	var a6 requestAddressResponse
	call(t, h, "IpamDriver.RequestAddress", requestAddressRequest{PoolID: p6.PoolID}, &a6)
	call(t, h, "NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: nid, EndpointID: eid, Interface: &endpointInterface{AddressIPv6: a6.Address}}, nil)
	var j joinResponse
	if code, body := call(t, h, "NetworkDriver.Join", joinRequest{NetworkID: nid, EndpointID: eid, SandboxKey: "/x"}, &j); code != 200 {
		t.Fatalf("Join: %s", body)
	}
	if j.Gateway != "" || j.GatewayIPv6 != "fe80::1" || len(j.StaticRoutes) != 1 || j.StaticRoutes[0].Destination != "fe80::1/128" {
		t.Errorf("IPv6-only Join: %+v", j)
	}
	// IPv4 asked off with no IPv6 either is refused, saying what to do.
	_, body := call(t, h, "NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: "c", Options: map[string]any{optEnableIPv4: false}}, nil)
	if !strings.Contains(body, "--ipv6") {
		t.Errorf("a network with no family: %s", body)
	}
}
