package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/duetnet/duet/internal/config"
	"github.com/duetnet/duet/internal/firewall"
	"github.com/duetnet/duet/internal/ipam"
	"github.com/duetnet/duet/internal/kernel"
	"github.com/duetnet/duet/internal/podnet"
	"github.com/duetnet/duet/internal/store"
	"github.com/duetnet/duet/internal/store/memstore"
)

type fakeNet struct {
	setupErr error
	specs    map[string]podnet.Spec // by HostIfName
	torn     []string
}

var _ PodNetwork = (*fakeNet)(nil)

func (f *fakeNet) Setup(s podnet.Spec) (podnet.Result, error) {
	if f.setupErr != nil {
		return podnet.Result{}, f.setupErr
	}
	f.specs[s.HostIfName] = s
	r := podnet.Result{HostIfName: s.HostIfName, PodIfName: s.IfName}
	for _, a := range s.Addresses {
		gw := podnet.GatewayV6
		def := netip.MustParsePrefix("::/0")
		if a.Addr().Is4() {
			gw, def = podnet.GatewayV4, netip.MustParsePrefix("0.0.0.0/0")
		}
		r.Gateways = append(r.Gateways, gw)
		r.Routes = append(r.Routes, podnet.Route{Dst: def, GW: gw})
	}
	return r, nil
}

func (f *fakeNet) Check(s podnet.Spec) error {
	if _, ok := f.specs[s.HostIfName]; !ok {
		return errors.New("host route missing")
	}
	return nil
}

func (f *fakeNet) Teardown(netns, ifName, hostIfName string) error {
	delete(f.specs, hostIfName)
	f.torn = append(f.torn, hostIfName)
	return nil
}

// fakeFirewall records the scripts it is given, and which pods have
// elements (an "add element ... pod_macs" adds one, a delete removes one).
type fakeFirewall struct {
	scripts []string
	pods    map[string]bool
	checkOK bool
}

var _ Firewall = (*fakeFirewall)(nil)

func (f *fakeFirewall) Apply(script string) error {
	f.scripts = append(f.scripts, script)
	if f.pods == nil {
		f.pods = map[string]bool{}
	}
	for _, line := range strings.Split(script, "\n") {
		var fam, name string
		if _, err := fmt.Sscanf(line, "add element %s duet pod_macs { %s . ", &fam, &name); err == nil {
			f.pods[name] = true
		}
		if _, err := fmt.Sscanf(line, "delete element %s duet pod_macs { %s . ", &fam, &name); err == nil {
			delete(f.pods, name)
		}
	}
	return nil
}

// ApplyFast refuses additions, so the tests see ADD's nft scripts, and
// records a deletion's removal of the pod's elements.
func (f *fakeFirewall) ApplyFast(op firewall.FastOp) error {
	if op.Add {
		return errors.New("fake: no netlink")
	}
	for _, e := range op.Elements {
		if e.Set == "pod_macs" {
			delete(f.pods, strings.TrimRight(string(e.Key), "\x00"))
		}
	}
	return nil
}

// List lists the pod_macs set, keyed as the kernel keys it (the MAC
// left out: only the interface name is read).
func (f *fakeFirewall) List(sets []firewall.RawElement) ([]firewall.RawElement, error) {
	var out []firewall.RawElement
	for _, s := range sets {
		if s.Set != "pod_macs" || s.Family != firewall.Inet {
			continue
		}
		for name := range f.pods {
			key := make([]byte, 16)
			copy(key, name)
			out = append(out, firewall.RawElement{Family: s.Family, Set: s.Set, Key: key})
		}
	}
	return out, nil
}

func (f *fakeFirewall) Lock() (func(), error) { return func() {}, nil }
func (f *fakeFirewall) Dequeue(string)        {}
func (f *fakeFirewall) Removal(name, fams string, fn func(map[string]string) error) error {
	return fn(map[string]string{name: fams})
}

func (f *fakeFirewall) CheckPod(pod firewall.Pod) error {
	if !f.pods[pod.HostIf] {
		return errors.New("pod elements missing")
	}
	return nil
}

type fakeHost struct {
	forwarded []netip.Addr
	changes   []kernel.SysctlChange // what EnableForwarding reports it changed
}

var _ Host = (*fakeHost)(nil)

func (h *fakeHost) DefaultRouteMTU() (int, error)                                { return 9000, nil }
func (h *fakeHost) Prefixes() ([]netip.Prefix, error)                            { return nil, nil }
func (h *fakeHost) OnLinkPrefixes() ([]kernel.OnLinkPrefix, error)               { return nil, nil }
func (h *fakeHost) ProxyPods([]kernel.ProxyEntry) ([]kernel.SysctlChange, error) { return nil, nil }
func (h *fakeHost) UnproxyPods([]netip.Addr) error                               { return nil }
func (h *fakeHost) Links() (map[string]bool, error)                              { return map[string]bool{}, nil }
func (h *fakeHost) EnableForwarding(a []netip.Addr) ([]kernel.SysctlChange, error) {
	h.forwarded = append(h.forwarded, a...)
	return h.changes, nil
}

func newPlugin(t *testing.T) (*Plugin, *fakeNet, *memstore.Store, *bytes.Buffer) {
	s := memstore.New()
	net := &fakeNet{specs: map[string]podnet.Spec{}}
	out := &bytes.Buffer{}
	return &Plugin{
		Net:      net,
		Host:     &fakeHost{},
		Firewall: &fakeFirewall{},
		Open:     func(config.Datastore) (store.Store, error) { return nopClose{s}, nil },
		Rand:     rand.New(rand.NewSource(1)),
		Hostname: func() (string, error) { return "node-a", nil },
		Stdout:   out,
	}, net, s, out
}

// nopClose keeps the shared memstore open across plugin calls.
type nopClose struct{ *memstore.Store }

func (nopClose) Close() error { return nil }

func args(id, conf string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, Netns: "/var/run/netns/" + id, IfName: "eth0", StdinData: []byte(conf)}
}

const dualConf = `{"cniVersion":"1.1.0","name":"n","type":"duet","pools":[{"cidr":"fd00:1::/48"},{"cidr":"10.7.0.0/16"}]}`

func allocations(t *testing.T, s store.Store) []ipam.Allocation {
	var as []ipam.Allocation
	_ = s.View(context.Background(), func(tx store.Tx) (err error) { as, err = ipam.List(tx, ""); return err })
	return as
}

func code(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestAddResultRouted(t *testing.T) {
	p, net, _, out := newPlugin(t)
	if err := p.Add(args("c1", dualConf)); err != nil {
		t.Fatal(err)
	}
	var res struct {
		IPs []struct {
			Address, Gateway string
			Interface        *int
		}
		Routes     []struct{ Dst, GW string }
		Interfaces []struct{ Name, Sandbox string }
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.IPs) != 2 || res.IPs[0].Address != "fd00:1::2/128" || res.IPs[0].Gateway != "fe80::1" ||
		res.IPs[1].Address != "10.7.0.2/32" || res.IPs[1].Gateway != "169.254.1.1" || *res.IPs[0].Interface != 1 {
		t.Errorf("ips: %+v", res.IPs)
	}
	if len(res.Routes) != 2 || len(res.Interfaces) != 2 || res.Interfaces[1].Sandbox != "/var/run/netns/c1" {
		t.Errorf("routes %+v interfaces %+v", res.Routes, res.Interfaces)
	}
	s := net.specs[HostIfName(ipam.Handle{Network: "n", ContainerID: "c1", IfName: "eth0"})]
	if s.MTU != 9000 || s.Mode != podnet.Routed || len(s.Addresses) != 2 || s.Addresses[0].Bits() != 128 {
		t.Errorf("spec %+v", s)
	}
}

func TestAddBridgeUsesPoolPrefix(t *testing.T) {
	p, net, _, _ := newPlugin(t)
	conf := strings.Replace(dualConf, `"type":"duet"`, `"type":"duet","mode":"bridge","mtu":1400`, 1)
	if err := p.Add(args("c1", conf)); err != nil {
		t.Fatal(err)
	}
	for _, s := range net.specs {
		if s.BridgeName != "duet0" || s.Addresses[0].String() != "fd00:1::2/48" || s.BridgeGateways[0].String() != "fd00:1::1/48" || s.BridgeGateways[1].String() != "10.7.0.1/16" || s.MTU != 1400 {
			t.Errorf("spec %+v", s)
		}
	}
}

func TestAddFailureRollsBack(t *testing.T) {
	p, net, s, _ := newPlugin(t)
	net.setupErr = fmt.Errorf("boom: %w", &podnet.LinkExistsError{Name: "eth0", NetNS: "/var/run/netns/c1"})
	err := p.Add(args("c1", dualConf))
	if code(err) != ErrInterfaceExists || !strings.Contains(err.Error(), "CNI_IFNAME") {
		t.Fatalf("got %v (code %d)", err, code(err))
	}
	if as := allocations(t, s); len(as) != 0 {
		t.Fatalf("failed ADD left allocations: %+v", as)
	}
	net.setupErr = &podnet.NetNSError{Path: "/nope", Err: errors.New("no such file")}
	if err := p.Add(args("c1", dualConf)); code(err) != types.ErrInvalidEnvironmentVariables {
		t.Fatalf("missing netns: got %v", err)
	}
}

func TestBadConfigLeavesNothing(t *testing.T) {
	for _, conf := range []string{
		`{"cniVersion":"1.1.0","name":"n","type":"duet","colour":"red"}`,
		`{"cniVersion":"1.1.0","name":"n","type":"duet","families":"ipv6","pools":[{"cidr":"fd00::/48"},{"cidr":"fd00::/56"}]}`,
		`{"cniVersion":"1.1.0","name":"n","type":"duet","families":"ipv6","pools":[{"cidr":"fd00::/96","assign":"mac"}]}`,
	} {
		p, net, s, _ := newPlugin(t)
		err := p.Add(args("c1", conf))
		if code(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("%s: got %v", conf, err)
		}
		if len(allocations(t, s)) != 0 || len(net.specs) != 0 {
			t.Errorf("%s: left something behind", conf)
		}
	}
}

func TestExhausted(t *testing.T) {
	p, _, _, _ := newPlugin(t)
	conf := `{"cniVersion":"1.1.0","name":"n","type":"duet","families":"ipv6","pools":[{"cidr":"fd00::/126","blockSize":126}]}`
	for i := 0; i < 2; i++ { // ::0 and ::1 are reserved
		if err := p.Add(args(fmt.Sprint("c", i), conf)); err != nil {
			t.Fatal(err)
		}
	}
	err := p.Add(args("c9", conf))
	if code(err) != ErrPoolExhausted || !strings.Contains(err.Error(), "fd00::/126") {
		t.Fatalf("got %v", err)
	}
	if err := p.Status(args("", conf)); code(err) != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS on a full pool: %v", err)
	}
}

func TestStoreUnavailable(t *testing.T) {
	p, _, _, _ := newPlugin(t)
	p.Open = func(config.Datastore) (store.Store, error) {
		return nil, fmt.Errorf("locked: %w", store.ErrUnavailable)
	}
	if err := p.Add(args("c1", dualConf)); code(err) != types.ErrTryAgainLater {
		t.Fatalf("got %v", err)
	}
	if err := p.Status(args("", dualConf)); code(err) != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS: got %v", err)
	}
}

func TestDelIdempotentAndCheck(t *testing.T) {
	p, net, s, _ := newPlugin(t)
	if err := p.Add(args("c1", dualConf)); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(args("c1", dualConf)); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	for k := range net.specs {
		delete(net.specs, k) // someone removed the host route
	}
	if err := p.Check(args("c1", dualConf)); err == nil {
		t.Fatal("CHECK passed with the network gone")
	}
	for i := 0; i < 2; i++ {
		if err := p.Del(args("c1", dualConf)); err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	if len(allocations(t, s)) != 0 {
		t.Fatal("DEL left the allocation")
	}
	if err := p.Check(args("c1", dualConf)); code(err) != types.ErrUnknownContainer {
		t.Fatalf("CHECK after DEL: %v", err)
	}
}

func TestCheckPrevResultMismatch(t *testing.T) {
	p, _, _, _ := newPlugin(t)
	if err := p.Add(args("c1", dualConf)); err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(dualConf, `"type":"duet"`, `"type":"duet","prevResult":{"cniVersion":"1.1.0","ips":[{"address":"fd00:1::99/128"}]}`, 1)
	if err := p.Check(args("c1", conf)); err == nil || !strings.Contains(err.Error(), "fd00:1::99") {
		t.Fatalf("got %v", err)
	}
}

func TestGC(t *testing.T) {
	p, _, s, _ := newPlugin(t)
	for _, id := range []string{"keep", "gone1", "gone2"} {
		if err := p.Add(args(id, dualConf)); err != nil {
			t.Fatal(err)
		}
	}
	// GC without valid-attachments must not free everything.
	if err := p.GC(args("", dualConf)); err != nil || len(allocations(t, s)) != 3 {
		t.Fatalf("GC without attachments: %v", err)
	}
	conf := strings.Replace(dualConf, `"type":"duet"`, `"type":"duet","cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]`, 1)
	if err := p.GC(args("", conf)); err != nil {
		t.Fatal(err)
	}
	if as := allocations(t, s); len(as) != 1 || as[0].ContainerID != "keep" {
		t.Fatalf("left %+v", as)
	}
}

func TestZeroConfigIPv6Only(t *testing.T) {
	p, net, _, _ := newPlugin(t)
	if err := p.Add(args("c1", `{"cniVersion":"1.0.0","name":"z","type":"duet","families":"ipv6"}`)); err != nil {
		t.Fatal(err)
	}
	for _, s := range net.specs {
		if len(s.Addresses) != 1 || !ipam.ULA.Contains(s.Addresses[0].Addr()) {
			t.Fatalf("want one ULA address, got %v", s.Addresses)
		}
	}
}

func TestHostIfName(t *testing.T) {
	h := ipam.Handle{Network: "n", ContainerID: "c", IfName: "eth0"}
	if a, b := HostIfName(h), HostIfName(h); a != b || len(a) > 15 || !strings.HasPrefix(a, "dt") {
		t.Fatalf("%q %q", a, b)
	}
	h2 := h
	h2.IfName = "eth1"
	if HostIfName(h) == HostIfName(h2) {
		t.Fatal("two interfaces of one container share a host name")
	}
}

func TestProtectionsFollowThePod(t *testing.T) {
	p, net, _, _ := newPlugin(t)
	fw := p.Firewall.(*fakeFirewall)
	if err := p.Add(args("c1", dualConf)); err != nil {
		t.Fatal(err)
	}
	host := HostIfName(ipam.Handle{Network: "n", ContainerID: "c1", IfName: "eth0"})
	if !fw.pods[host] || !strings.Contains(fw.scripts[0], "nat6 { fd00:1::/48 }") {
		t.Fatalf("ADD did not protect the pod: %v\n%s", fw.pods, fw.scripts)
	}
	if err := p.Check(args("c1", dualConf)); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	delete(fw.pods, host)
	if err := p.Check(args("c1", dualConf)); err == nil {
		t.Fatal("CHECK passed without the pod's protections")
	}
	fw.pods[host] = true
	if err := p.Del(args("c1", dualConf)); err != nil || fw.pods[host] {
		t.Fatalf("DEL: %v, elements left: %v", err, fw.pods)
	}
	// A failed Setup removes the protections ADD installed first.
	net.setupErr = errors.New("boom")
	_ = p.Add(args("c2", dualConf))
	if len(fw.pods) != 0 {
		t.Fatalf("failed ADD left elements: %v", fw.pods)
	}
	// Per-pod opt-out prefixes come from CNI_ARGS; a bad one is named.
	net.setupErr = nil
	a := args("c3", dualConf)
	a.Args = "IgnoreUnknown=1;DUET_ALLOWED_SOURCE_PREFIXES=2001:db8:9::/64,192.0.2.0/24"
	if err := p.Add(a); err != nil {
		t.Fatal(err)
	}
	if last := fw.scripts[len(fw.scripts)-1]; !strings.Contains(last, "2001:db8:9::/64") || !strings.Contains(last, "192.0.2.0/24") {
		t.Fatalf("opt-out prefixes missing:\n%s", last)
	}
	a = args("c4", dualConf)
	a.Args = "DUET_ALLOWED_SOURCE_PREFIXES=nonsense"
	if err := p.Add(a); err == nil || !strings.Contains(err.Error(), "DUET_ALLOWED_SOURCE_PREFIXES") {
		t.Fatalf("got %v", err)
	}
}

func TestProtectionsOff(t *testing.T) {
	p, _, _, _ := newPlugin(t)
	fw := p.Firewall.(*fakeFirewall)
	conf := strings.Replace(dualConf, `"type":"duet"`, `"type":"duet","protections":false`, 1)
	if err := p.Add(args("c1", conf)); err != nil {
		t.Fatal(err)
	}
	if err := p.Check(args("c1", conf)); err != nil {
		t.Fatal(err)
	}
	if len(fw.scripts) != 0 {
		t.Fatalf("protections off, yet nft ran: %v", fw.scripts)
	}
}

// TestNoNFTables: with protections on and nftables unusable, ADD fails
// with code 102 and a message saying how to fix it, and leaves nothing.
func TestNoNFTables(t *testing.T) {
	p, net, s, _ := newPlugin(t)
	p.Firewall = brokenFirewall{}
	err := p.Add(args("c1", dualConf))
	if code(err) != ErrNoFirewall || !strings.Contains(err.Error(), `"protections": false`) {
		t.Fatalf("got %v (code %d)", err, code(err))
	}
	if len(allocations(t, s)) != 0 || len(net.specs) != 0 {
		t.Fatal("a failed ADD left something behind")
	}
}

type brokenFirewall struct{}

func (brokenFirewall) Apply(string) error {
	return fmt.Errorf("%w: the nft command is missing (install Debian's nftables package)", kernel.ErrNoNFTables)
}
func (brokenFirewall) ApplyFast(firewall.FastOp) error { return kernel.ErrNoNFTables }
func (brokenFirewall) CheckPod(firewall.Pod) error     { return kernel.ErrNoNFTables }
func (brokenFirewall) List([]firewall.RawElement) ([]firewall.RawElement, error) {
	return nil, kernel.ErrNoNFTables
}
func (brokenFirewall) Lock() (func(), error) { return func() {}, nil }
func (brokenFirewall) Dequeue(string)        {}
func (brokenFirewall) Removal(name, fams string, fn func(map[string]string) error) error {
	return fn(map[string]string{name: fams})
}

// The host sysctls an ADD changes go to the runtime's log and to the
// network's sysctlLog, so a lab's changes stay in the lab's directory.
func TestSysctlChangesRecorded(t *testing.T) {
	p, _, _, _ := newPlugin(t)
	p.Host.(*fakeHost).changes = []kernel.SysctlChange{{Name: "net.ipv6.conf.all.forwarding", Old: "0", New: "1"}}
	var stderr bytes.Buffer
	p.Stderr = &stderr
	path := filepath.Join(t.TempDir(), "node1", "sysctl-changes.jsonl")
	conf := `{"cniVersion":"1.1.0","name":"n","type":"duet","sysctlLog":"` + path + `","pools":[{"cidr":"fd00:1::/48"},{"cidr":"10.7.0.0/16"}]}`
	if err := p.Add(args("c1", conf)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "duet: sysctl net.ipv6.conf.all.forwarding: 0 -> 1") {
		t.Errorf("stderr: %q", stderr.String())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e SysctlLogEntry
	if err := json.Unmarshal(bytes.TrimSpace(raw), &e); err != nil || e.Name != "net.ipv6.conf.all.forwarding" || e.Old != "0" || e.New != "1" {
		t.Errorf("log line %q: %+v %v", raw, e, err)
	}
}
